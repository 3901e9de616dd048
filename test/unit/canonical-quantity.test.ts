// The quantities we emit are written as the API server stores them, so a pod read back equals the plan.
import t from 'tap';
import { canonicalQuantity } from '../../src/contract/quantity.js';

t.test('canonical form as kube-apiserver stores it', async (t) => {
  const cases: [string, string][] = [
    ['1000m', '1'],
    ['5000m', '5'],
    ['1500m', '1500m'],
    ['0.5', '500m'],
    ['2000', '2k'],
    ['512', '512'],
    ['1024Mi', '1Gi'],
    ['1536Mi', '1536Mi'],
    ['1.5Gi', '1536Mi'],
    ['1025Ki', '1025Ki'],
    ['100Mi', '100Mi'],
    ['0', '0'],
    ['1e3', '1e3'],
  ];
  for (const [text, want] of cases) t.equal(canonicalQuantity(text), want, text);
  t.equal(canonicalQuantity('lots'), undefined, 'not a quantity');
});
