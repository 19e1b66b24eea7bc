// Sizes as the page shows them: bytes for people, and images scaled to fit.

/** A size in bytes for people: B, KB, MB or GB (powers of 1024). */
export function humanSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  if (bytes < 1024 * 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${(bytes / 1024 / 1024 / 1024).toFixed(1)} GB`;
}

/**
 * An image's size scaled down (never up) to fit `max` on its longest side,
 * in whole pixels, at least 1. An image whose size is unknown (0) gets a
 * square of `max`, so the chat does not jump when its thumbnail arrives.
 */
export function fitWithin(width: number, height: number, max: number): { width: number; height: number } {
  if (width <= 0 || height <= 0) return { width: max, height: max };
  const scale = Math.min(1, max / Math.max(width, height));
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/** A share of a total as a whole percentage, 0 while the total is unknown. */
export function percent(part: number, total: number): number {
  return total > 0 ? Math.min(100, Math.floor((part / total) * 100)) : 0;
}
