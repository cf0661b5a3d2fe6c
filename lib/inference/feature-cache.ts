import { BackboneFeatures, featureBytes } from './features';

/**
 * Backbone features by key, least recently used dropped first once they pass `limitBytes` (the
 * entry just computed always stays). A frozen backbone gives a volume the same features every
 * time, so experiments and the API compute them once per volume.
 */
export class FeatureCache {
  private readonly entries = new Map<string, BackboneFeatures>();
  hits = 0;
  misses = 0;

  constructor(private readonly limitBytes: number) {}

  get(id: string, compute: () => BackboneFeatures): BackboneFeatures {
    const found = this.entries.get(id);
    if (found) {
      this.hits++;
      this.entries.delete(id);
      this.entries.set(id, found);
      return found;
    }
    this.misses++;
    const value = compute();
    this.entries.set(id, value);
    let total = [...this.entries.values()].reduce((s, f) => s + featureBytes(f), 0);
    for (const [key, entry] of this.entries) {
      if (total <= this.limitBytes || key === id) break;
      total -= featureBytes(entry);
      this.entries.delete(key);
    }
    return value;
  }

  clear(): void {
    this.entries.clear();
  }
}
