import { FseftError } from '../util/errors';
import { Range, checkRange } from '../util/ranges';

/** Parsed command line: positional arguments and options (repeatable options keep every value). */
export interface ParsedArgs {
  positional: string[];
  options: Map<string, string[]>;
}

/**
 * Parses `--name value`, `--name=value`, boolean `--flag` and `--no-flag`. A value that starts
 * with '-' is taken as a value when it is a number (e.g. `--window -175,250`).
 */
export function parseArgs(argv: string[], booleanFlags: readonly string[] = []): ParsedArgs {
  const positional: string[] = [];
  const options = new Map<string, string[]>();
  const add = (name: string, value: string) => options.set(name, [...(options.get(name) ?? []), value]);
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i];
    if (!token.startsWith('--')) {
      positional.push(token);
      continue;
    }
    const body = token.slice(2);
    const eq = body.indexOf('=');
    if (eq >= 0) {
      add(body.slice(0, eq), body.slice(eq + 1));
      continue;
    }
    if (booleanFlags.includes(body)) {
      add(body, 'true');
      continue;
    }
    if (body.startsWith('no-') && booleanFlags.includes(body.slice(3))) {
      add(body.slice(3), 'false');
      continue;
    }
    const next = argv[i + 1];
    if (next === undefined || (next.startsWith('-') && !/^-\d/.test(next))) throw new FseftError(`option --${body} needs a value`);
    add(body, next);
    i++;
  }
  return { positional, options };
}

/** Typed access to parsed options, with errors that name the option. */
export class Options {
  private readonly used = new Set<string>();

  constructor(private readonly parsed: ParsedArgs) {}

  get positional(): string[] {
    return this.parsed.positional;
  }

  string(name: string): string | undefined {
    this.used.add(name);
    const values = this.parsed.options.get(name);
    return values?.[values.length - 1];
  }

  required(name: string): string {
    const value = this.string(name);
    if (value === undefined) throw new FseftError(`missing required option --${name}`);
    return value;
  }

  all(name: string): string[] {
    this.used.add(name);
    return this.parsed.options.get(name) ?? [];
  }

  number(name: string, fallback?: number, range?: Range): number | undefined {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value)) throw new FseftError(`option --${name} expects a number, got '${raw}'`);
    if (range) checkRange(`option --${name}`, value, range);
    return value;
  }

  integer(name: string, fallback?: number, range?: Range): number | undefined {
    const value = this.number(name, fallback, range);
    if (value !== undefined && !Number.isInteger(value)) throw new FseftError(`option --${name} expects an integer, got ${value}`);
    return value;
  }

  flag(name: string, fallback = false): boolean {
    const raw = this.string(name);
    return raw === undefined ? fallback : raw !== 'false';
  }

  numberList(name: string, length?: number[]): number[] | undefined {
    const raw = this.string(name);
    if (raw === undefined) return undefined;
    const values = raw.split(',').map((v) => Number(v.trim()));
    if (values.some((v) => !Number.isFinite(v)) || (length && !length.includes(values.length))) {
      throw new FseftError(`option --${name} expects ${length ? length.join(' or ') + ' ' : ''}comma-separated numbers, got '${raw}'`);
    }
    return values;
  }

  /**
   * Rejects options the command does not know (catches typos such as --spacng) and, unless the
   * command takes some, positional arguments (a forgotten --image would otherwise be ignored).
   */
  rejectUnknown({ positional = false }: { positional?: boolean } = {}): void {
    const unknown = [...this.parsed.options.keys()].filter((k) => !this.used.has(k));
    if (unknown.length > 0) throw new FseftError(`unknown option${unknown.length > 1 ? 's' : ''}: ${unknown.map((u) => '--' + u).join(', ')}`);
    if (!positional && this.parsed.positional.length > 0) {
      throw new FseftError(`unexpected argument${this.parsed.positional.length > 1 ? 's' : ''} ${this.parsed.positional.map((p) => `'${p}'`).join(' ')} (every input is given with an option; see --help)`);
    }
  }
}

