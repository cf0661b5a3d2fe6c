import { test } from 'node:test';
import { FIXTURE_SKIP } from './helpers';
import { checkParity } from './parity-helpers';

test('MONAI parity on the plain CPU backend: logits, five hidden states and decoder features within 1e-4', { skip: FIXTURE_SKIP }, async (t) => {
  const errors = await checkParity('cpu', 1e-4);
  t.diagnostic(`max abs errors (cpu): ${JSON.stringify(errors)}`);
});
