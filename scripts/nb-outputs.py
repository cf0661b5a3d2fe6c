"""Prints the outputs of an executed notebook, one line each (for looking at nbconvert results)."""
import json, sys
nb = json.load(open(sys.argv[1]))
for i, c in enumerate(nb['cells']):
    for o in c.get('outputs', []):
        kinds = list(o.get('data', {}).keys())
        text = ''.join(o.get('text', ''))[:300] if 'text' in o else ''
        print(i, o['output_type'], kinds, text.replace('\n', ' | ')[:300], o.get('ename', ''), o.get('evalue', ''))
