import * as path from 'node:path';
import { initBackend } from '../../backend/backend';
import { REPO_ROOT_HINT, checkStudyPlansDir, runReproduction } from '../../studies/reproduction';
import { loadNamedModel } from '../../networks/model-io';
import { Options } from '../args';

export const REPRODUCE_HELP = `fseft reproduce [--model default] [--plans docs/reproduction] [--work runs/reproduction] [--report docs/reproduction.md]
  The reproduction study of the paper's findings: the plans in --plans (main grid, whole-network
  baselines, gamma ablation; target.json the synthetic target institution) run with resumable
  records in --work, then --report gets the tables with 95 % bootstrap intervals, the figures and
  a verdict per finding. Interrupt it at any time: the next run resumes where it stopped.`;

export async function reproduceCommand(options: Options): Promise<void> {
  const plansDir = options.string('plans') ?? path.join(REPO_ROOT_HINT, 'docs', 'reproduction');
  const workDir = options.string('work') ?? path.join(REPO_ROOT_HINT, 'runs', 'reproduction');
  const report = options.string('report') ?? path.join(REPO_ROOT_HINT, 'docs', 'reproduction.md');
  const modelName = options.string('model') ?? 'default';
  const backend = options.string('backend');
  options.rejectUnknown();
  checkStudyPlansDir(plansDir);
  await initBackend(backend);
  const { model, manifest, dir, fingerprint } = loadNamedModel(modelName);
  try {
    await runReproduction({ plansDir, workDir, report, model, manifest, modelDir: dir, modelFingerprint: fingerprint });
  } finally {
    model.dispose();
  }
}
