// Reading the HTTP status of a failed @kubernetes/client-node call (its
// ApiException carries it as `code`), and the most common use of it.

/** Whether the API answered one of these status codes. */
export function isStatus(err: unknown, ...codes: number[]): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' && codes.includes(code);
}

/** The object, or undefined when the API says it is not there; other errors propagate. */
export async function unlessNotFound<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read;
  } catch (err) {
    if (isStatus(err, 404)) return undefined;
    throw err;
  }
}
