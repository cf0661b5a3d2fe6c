/**
 * Errors a user can act on: every error the kit raises on purpose is an `FseftError`,
 * naming the file (when there is one) and the problem. The CLI prints `message` alone,
 * without a stack trace, and exits non-zero.
 */
export class FseftError extends Error {
  readonly file?: string;

  constructor(message: string, file?: string) {
    super(file ? `${file}: ${message}` : message);
    this.name = 'FseftError';
    this.file = file;
  }
}
