#!/usr/bin/env sh
# Registers the TypeScript kernel (tslab) with the Jupyter of FSEFT_JUPYTER_PYTHON (default
# /usr/bin/python3, where Debian's jupyter-nbconvert and python3-ipykernel live) and checks it.
set -eu
cd "$(dirname "$0")/.."
python=${FSEFT_JUPYTER_PYTHON:-/usr/bin/python3}
if ! "$python" -c 'import nbconvert, ipykernel' 2>/dev/null; then
  echo "no Jupyter for $python: install it first, e.g. sudo apt-get install jupyter-nbconvert python3-ipykernel (see environment/README.md)" >&2
  exit 1
fi
./node_modules/.bin/tslab install --python="$python"
if "$python" -c 'import jupyter_client.kernelspec as k, sys; sys.exit(0 if "tslab" in k.find_kernel_specs() else 1)'; then
  echo "tslab kernel registered with $python. Open the notebooks with node_modules/.bin on PATH, e.g.:"
  echo "  PATH=\$PWD/node_modules/.bin:\$PATH $python -m jupyter notebook notebooks/   (or jupyter lab)"
else
  echo "the tslab kernel did not register with $python" >&2
  exit 1
fi
