/**
 * 4 x 4 affine matrices (row-major `number[][]`) that map voxel indices (i, j, k, 1) to world
 * millimetres in the NIfTI RAS+ frame: +x towards the subject's Right, +y Anterior, +z Superior.
 */
export type Affine = number[][];
export type Vec3 = [number, number, number];

export function cloneAffine(a: Affine): Affine {
  return a.map((row) => row.slice());
}

export function multiplyAffines(a: Affine, b: Affine): Affine {
  const out: Affine = [[], [], [], []];
  for (let r = 0; r < 4; r++) {
    for (let c = 0; c < 4; c++) {
      let sum = 0;
      for (let k = 0; k < 4; k++) sum += a[r][k] * b[k][c];
      out[r][c] = sum;
    }
  }
  return out;
}

/** Inverse of an affine whose last row is (0, 0, 0, 1). */
export function invertAffine(a: Affine): Affine {
  const [[m00, m01, m02, tx], [m10, m11, m12, ty], [m20, m21, m22, tz]] = a;
  const c00 = m11 * m22 - m12 * m21;
  const c01 = m12 * m20 - m10 * m22;
  const c02 = m10 * m21 - m11 * m20;
  const det = m00 * c00 + m01 * c01 + m02 * c02;
  if (!Number.isFinite(det) || Math.abs(det) < 1e-12) throw new Error('affine is not invertible');
  const inv = [
    [c00 / det, (m02 * m21 - m01 * m22) / det, (m01 * m12 - m02 * m11) / det],
    [c01 / det, (m00 * m22 - m02 * m20) / det, (m02 * m10 - m00 * m12) / det],
    [c02 / det, (m01 * m20 - m00 * m21) / det, (m00 * m11 - m01 * m10) / det],
  ];
  return [
    [inv[0][0], inv[0][1], inv[0][2], -(inv[0][0] * tx + inv[0][1] * ty + inv[0][2] * tz)],
    [inv[1][0], inv[1][1], inv[1][2], -(inv[1][0] * tx + inv[1][1] * ty + inv[1][2] * tz)],
    [inv[2][0], inv[2][1], inv[2][2], -(inv[2][0] * tx + inv[2][1] * ty + inv[2][2] * tz)],
    [0, 0, 0, 1],
  ];
}

export function applyAffine(a: Affine, p: readonly number[]): Vec3 {
  return [
    a[0][0] * p[0] + a[0][1] * p[1] + a[0][2] * p[2] + a[0][3],
    a[1][0] * p[0] + a[1][1] * p[1] + a[1][2] * p[2] + a[1][3],
    a[2][0] * p[0] + a[2][1] * p[1] + a[2][2] * p[2] + a[2][3],
  ];
}

/** Voxel size along each array axis: the norms of the affine's first three columns. */
export function affineSpacing(a: Affine): Vec3 {
  const norm = (c: number) => Math.hypot(a[0][c], a[1][c], a[2][c]);
  return [norm(0), norm(1), norm(2)];
}

/** A copy of `a` whose first three columns are rescaled to the given voxel sizes (directions kept). */
export function withSpacing(a: Affine, spacing: readonly number[]): Affine {
  const current = affineSpacing(a);
  const out = cloneAffine(a);
  for (let c = 0; c < 3; c++) {
    const scale = spacing[c] / current[c];
    for (let r = 0; r < 3; r++) out[r][c] = a[r][c] * scale;
  }
  return out;
}

/** A copy of `a` whose origin is moved to the world position of voxel `start`. */
export function translateToVoxel(a: Affine, start: readonly number[]): Affine {
  const out = cloneAffine(a);
  const origin = applyAffine(a, start);
  for (let r = 0; r < 3; r++) out[r][3] = origin[r];
  return out;
}

/**
 * For each array axis, the world axis it runs along most (0 = x, 1 = y, 2 = z) and its
 * direction (+1 / -1), as nibabel's `io_orientation`: axes are matched greedily, strongest
 * direction cosine first, so that oblique affines get the closest axis-aligned orientation.
 */
export function axisOrientation(a: Affine): Array<{ worldAxis: number; direction: 1 | -1 }> {
  const spacing = affineSpacing(a);
  const cosines = [0, 1, 2].map((r) => [0, 1, 2].map((c) => a[r][c] / (spacing[c] || 1)));
  const result: Array<{ worldAxis: number; direction: 1 | -1 }> = [];
  const usedWorld = new Set<number>();
  const order = [0, 1, 2].sort(
    (p, q) => Math.max(...cosines.map((row) => Math.abs(row[q]))) - Math.max(...cosines.map((row) => Math.abs(row[p]))),
  );
  for (const axis of order) {
    let best = -1;
    for (let w = 0; w < 3; w++) {
      if (usedWorld.has(w)) continue;
      if (best < 0 || Math.abs(cosines[w][axis]) > Math.abs(cosines[best][axis])) best = w;
    }
    usedWorld.add(best);
    result[axis] = { worldAxis: best, direction: cosines[best][axis] < 0 ? -1 : 1 };
  }
  return result;
}

const POSITIVE_CODES = ['R', 'A', 'S'];
const NEGATIVE_CODES = ['L', 'P', 'I'];

/** Orientation codes of an affine, nibabel's `aff2axcodes`: e.g. 'RAS', 'LAS', 'LPS'. */
export function orientationCodes(a: Affine): string {
  return axisOrientation(a)
    .map(({ worldAxis, direction }) => (direction > 0 ? POSITIVE_CODES : NEGATIVE_CODES)[worldAxis])
    .join('');
}

/** Parses a three-letter orientation code such as 'RAS' into world axis and direction per array axis. */
export function parseOrientationCodes(codes: string): Array<{ worldAxis: number; direction: 1 | -1 }> {
  const upper = codes.toUpperCase();
  const parsed = [...upper].map((letter) => {
    const positive = POSITIVE_CODES.indexOf(letter);
    if (positive >= 0) return { worldAxis: positive, direction: 1 as const };
    const negative = NEGATIVE_CODES.indexOf(letter);
    if (negative >= 0) return { worldAxis: negative, direction: -1 as const };
    return undefined;
  });
  if (upper.length !== 3 || parsed.some((p) => !p) || new Set(parsed.map((p) => p!.worldAxis)).size !== 3) {
    throw new Error(`invalid orientation code '${codes}': expected three letters, one of R/L, A/P, S/I each`);
  }
  return parsed as Array<{ worldAxis: number; direction: 1 | -1 }>;
}
