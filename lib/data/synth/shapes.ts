import { Vec3 } from '../../io/affine';
import { Rng } from '../../util/random';

/** A solid in world millimetres: a bounding box and a point test. */
export interface Shape {
  low: Vec3;
  high: Vec3;
  contains(x: number, y: number, z: number): boolean;
}

/**
 * A smoothly deformed ellipsoid: the unit-radius test is modulated by a few low-frequency waves
 * over the direction, so no two organs have exactly the same outline.
 */
export function blob(center: Vec3, radii: Vec3, rng: Rng, { yaw = 0, wobble = 0.08 } = {}): Shape {
  const waves = [0, 1, 2].map(() => ({
    amplitude: wobble * rng.uniform(0.3, 1),
    k: [rng.normal() * 2, rng.normal() * 2, rng.normal() * 2],
    phase: rng.uniform(0, 2 * Math.PI),
  }));
  const cos = Math.cos(yaw);
  const sin = Math.sin(yaw);
  const reach = Math.max(...radii) * (1 + 3 * wobble);
  return {
    low: [center[0] - reach, center[1] - reach, center[2] - reach],
    high: [center[0] + reach, center[1] + reach, center[2] + reach],
    contains(x, y, z) {
      const dx = x - center[0];
      const dy = y - center[1];
      const u = (cos * dx + sin * dy) / radii[0];
      const v = (-sin * dx + cos * dy) / radii[1];
      const w = (z - center[2]) / radii[2];
      const q = Math.sqrt(u * u + v * v + w * w);
      if (q > 1 + 3 * wobble) return false;
      if (q < 1e-9) return true;
      let limit = 1;
      for (const wave of waves) limit += wave.amplitude * Math.sin((wave.k[0] * u + wave.k[1] * v + wave.k[2] * w) / q + wave.phase);
      return q < limit;
    },
  };
}

/** A tube of (linearly varying) radius along a polyline. */
export function tube(points: Vec3[], radii: number | number[]): Shape {
  const r = typeof radii === 'number' ? points.map(() => radii) : radii;
  const maxRadius = Math.max(...r);
  const low = [0, 1, 2].map((a) => Math.min(...points.map((p) => p[a])) - maxRadius) as Vec3;
  const high = [0, 1, 2].map((a) => Math.max(...points.map((p) => p[a])) + maxRadius) as Vec3;
  return {
    low,
    high,
    contains(x, y, z) {
      for (let s = 0; s + 1 < points.length; s++) {
        const a = points[s];
        const b = points[s + 1];
        const abx = b[0] - a[0], aby = b[1] - a[1], abz = b[2] - a[2];
        const length2 = abx * abx + aby * aby + abz * abz || 1;
        let t = ((x - a[0]) * abx + (y - a[1]) * aby + (z - a[2]) * abz) / length2;
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        const px = a[0] + t * abx - x, py = a[1] + t * aby - y, pz = a[2] + t * abz - z;
        const radius = r[s] + t * (r[s + 1] - r[s]);
        if (px * px + py * py + pz * pz < radius * radius) return true;
      }
      return false;
    },
  };
}

/** An elliptic cylinder along z with semi-axes (ax, ay) between z0 and z1. */
export function ellipticCylinder(cx: number, cy: number, ax: number, ay: number, z0: number, z1: number): Shape {
  return {
    low: [cx - ax, cy - ay, z0],
    high: [cx + ax, cy + ay, z1],
    contains(x, y, z) {
      const u = (x - cx) / ax;
      const v = (y - cy) / ay;
      return z >= z0 && z <= z1 && u * u + v * v <= 1;
    },
  };
}

/** Points of `shape` that are also on the given side of a plane through `point` with `normal`. */
export function clipByPlane(shape: Shape, point: Vec3, normal: Vec3): Shape {
  return {
    low: shape.low,
    high: shape.high,
    contains(x, y, z) {
      const side = (x - point[0]) * normal[0] + (y - point[1]) * normal[1] + (z - point[2]) * normal[2];
      return side <= 0 && shape.contains(x, y, z);
    },
  };
}

/** The part of a shape outside another (an organ that ends on another's wall, not inside it). */
export function subtract(shape: Shape, excluded: Shape): Shape {
  return {
    low: shape.low,
    high: shape.high,
    contains(x, y, z) {
      return shape.contains(x, y, z) && !excluded.contains(x, y, z);
    },
  };
}

/** A shape scaled about a centre (used for organ interiors: medulla, gastric content, lumen). */
export function shrink(shape: Shape, center: Vec3, factor: number): Shape {
  return {
    low: shape.low,
    high: shape.high,
    contains(x, y, z) {
      return shape.contains(center[0] + (x - center[0]) / factor, center[1] + (y - center[1]) / factor, center[2] + (z - center[2]) / factor);
    },
  };
}
