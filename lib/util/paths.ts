import * as fs from 'node:fs';
import * as path from 'node:path';
import { FseftError } from './errors';

/** A path as the file system sees it: symbolic links of its existing part resolved. */
export function canonicalPath(file: string): string {
  const absolute = path.resolve(file);
  let existing = absolute;
  const rest: string[] = [];
  while (!fs.existsSync(existing) && path.dirname(existing) !== existing) {
    rest.unshift(path.basename(existing));
    existing = path.dirname(existing);
  }
  try {
    return path.join(fs.realpathSync(existing), ...rest);
  } catch {
    return absolute;
  }
}

/**
 * Refuses a command whose outputs would overwrite one of its inputs or each other (e.g.
 * `predict --image q.nii.gz --out q.nii.gz` would replace the CT by its mask).
 */
export function refuseOverwritingInputs(outputs: string[], inputs: string[]): void {
  const inputPaths = new Map(inputs.map((file) => [canonicalPath(file), file]));
  const seen = new Map<string, string>();
  for (const output of outputs) {
    const canonical = canonicalPath(output);
    const input = inputPaths.get(canonical);
    if (input !== undefined) throw new FseftError(`the output would overwrite the input ${input}; choose another output`, output);
    const earlier = seen.get(canonical);
    if (earlier !== undefined) throw new FseftError(`two outputs are the same file (${earlier}); choose different names`, output);
    seen.set(canonical, output);
  }
}
