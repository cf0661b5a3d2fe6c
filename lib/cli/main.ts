#!/usr/bin/env node
import { FseftError } from '../util/errors';
import { Options, parseArgs } from './args';
import { ADAPT_HELP, adaptCommand } from './commands/adapt';
import { DEMO_HELP, demoCommand } from './commands/demo';
import { EXPERIMENT_HELP, REPORT_HELP, experimentCommand, reportCommand } from './commands/experiment';
import { PREDICT_HELP, predictCommand } from './commands/predict';
import { EVALUATE_HELP, evaluateCommand } from './commands/evaluate';
import { FORWARD_HELP, forwardCommand } from './commands/forward';
import { IMPORT_TORCH_HELP, importTorchCommand } from './commands/import-torch';
import { INFO_HELP, infoCommand } from './commands/info';
import { PREPROCESS_HELP, preprocessCommand } from './commands/preprocess';
import { PRETRAIN_HELP, pretrainCommand } from './commands/pretrain';
import { SYNTH_HELP, synthCommand } from './commands/synth';
import { REPRODUCE_HELP, reproduceCommand } from './commands/reproduce';
import { VALIDATE_HELP, validateCommand } from './commands/validate';
import { METHODS_HELP, methodsCommand } from './commands/methods';

const COMMANDS: Record<string, { run: (options: Options) => Promise<void>; help: string; flags: string[] }> = {
  info: { run: infoCommand, help: INFO_HELP, flags: ['json'] },
  preprocess: { run: preprocessCommand, help: PREPROCESS_HELP, flags: ['crop'] },
  synth: { run: synthCommand, help: SYNTH_HELP, flags: ['collection'] },
  'import-torch': { run: importTorchCommand, help: IMPORT_TORCH_HELP, flags: ['strict', 'normalize'] },
  pretrain: { run: pretrainCommand, help: PRETRAIN_HELP, flags: ['bce', 'checkpoint', 'balance-classes', 'balanced-bce', 'exclusion-bce'] },
  validate: { run: validateCommand, help: VALIDATE_HELP, flags: [] },
  forward: { run: forwardCommand, help: FORWARD_HELP, flags: ['features'] },
  methods: { run: methodsCommand, help: METHODS_HELP, flags: ['json'] },
  adapt: { run: adaptCommand, help: ADAPT_HELP, flags: ['ti', 'novel'] },
  predict: { run: predictCommand, help: PREDICT_HELP, flags: [] },
  evaluate: { run: evaluateCommand, help: EVALUATE_HELP, flags: [] },
  experiment: { run: experimentCommand, help: EXPERIMENT_HELP, flags: [] },
  report: { run: reportCommand, help: REPORT_HELP, flags: ['intervals'] },
  reproduce: { run: reproduceCommand, help: REPRODUCE_HELP, flags: [] },
  demo: { run: demoCommand, help: DEMO_HELP, flags: [] },
};

const USAGE = `fseft: few-shot, parameter-efficient fine-tuning of CT segmentation foundation models

usage: fseft <command> [options]     (fseft <command> --help for details)

${Object.values(COMMANDS)
  .map((c) => c.help)
  .join('\n\n')}
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return 0;
  }
  const entry = COMMANDS[command];
  if (!entry) {
    console.error(`fseft: unknown command '${command}'; commands: ${Object.keys(COMMANDS).join(', ')}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(entry.help);
    return 0;
  }
  try {
    await entry.run(new Options(parseArgs(rest, entry.flags)));
    return 0;
  } catch (error) {
    if (error instanceof FseftError) {
      console.error(`fseft ${command}: ${error.message}`);
      return 1;
    }
    console.error(`fseft ${command}: unexpected error: ${(error as Error).message}`);
    if (process.env.FSEFT_DEBUG) console.error((error as Error).stack);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
