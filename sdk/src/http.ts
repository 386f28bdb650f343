// The three HTTP calls of the protocol: raw protobuf bodies, no gRPC framing.
import { fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { MediaMeshError } from './errors.js';

/**
 * POSTs `msg` encoded with `reqSchema` and decodes the reply with `resSchema`.
 * A non-2xx status rejects with `MediaMeshError(status, body text)`; a network failure or
 * timeout with `NETWORK_ERROR` / `REQUEST_TIMEOUT`; an undecodable body with `INVALID_RESPONSE`.
 */
export async function postProtobuf<I extends DescMessage, O extends DescMessage>(
  url: string,
  reqSchema: I,
  msg: MessageShape<I>,
  resSchema: O,
  { token, timeoutMs, fetchImpl = globalThis.fetch }: { token?: string; timeoutMs: number; fetchImpl?: typeof fetch },
): Promise<MessageShape<O>> {
  const headers: Record<string, string> = { 'Content-Type': 'application/grpc' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const what = `POST ${url.replace(/^https?:\/\/[^/]+/, '')}`;
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  let res: Response;
  let body: Uint8Array;
  try {
    res = await fetchImpl(url, { method: 'POST', headers, body: toBinary(reqSchema, msg) as BodyInit, signal: ctrl.signal });
    body = new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    if (ctrl.signal.aborted) throw new MediaMeshError('REQUEST_TIMEOUT', `${what}: no response within ${timeoutMs} ms`, { request: what });
    throw new MediaMeshError('NETWORK_ERROR', `${what}: ${(e as Error).message}`, { request: what });
  } finally {
    clearTimeout(timer);
  }
  if (res.status < 200 || res.status > 299) {
    const text = new TextDecoder().decode(body.slice(0, 500)).trim();
    let message = text;
    try {
      const j = JSON.parse(text);
      message = j.error ?? j.message ?? text;
      if (typeof message !== 'string') message = JSON.stringify(message);
    } catch {
      /* plain text */
    }
    throw new MediaMeshError(res.status, `${what} -> ${res.status}${message ? `: ${message}` : ''}`, { status: res.status, request: what });
  }
  try {
    return fromBinary(resSchema, body);
  } catch (e) {
    throw new MediaMeshError('INVALID_RESPONSE', `${what}: undecodable ${resSchema.typeName} (${body.length} bytes): ${(e as Error).message}`, { status: res.status, request: what });
  }
}
