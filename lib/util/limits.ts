import { FseftError } from './errors';

/**
 * A positive whole-number limit from the environment, or its default. The kit's resource ceilings
 * (bytes read, voxels allocated) are stated defaults a user can raise by name.
 */
export function limitFromEnvironment(name: string, fallback: number): number {
  const setting = process.env[name];
  if (setting === undefined || setting === '') return fallback;
  const value = Number(setting);
  if (!Number.isSafeInteger(value) || value <= 0) throw new FseftError(`${name} must be a positive whole number, got '${setting}'`);
  return value;
}
