/**
 * Codes of errors raised by the SDK itself (server errors carry the server's numeric code).
 */
export type LocalErrorCode =
  | 'REQUEST_TIMEOUT'
  | 'NETWORK_ERROR'
  | 'INVALID_RESPONSE'
  | 'CLOSED'
  | 'NOT_CONNECTED'
  | 'INVALID_STATE';

/**
 * Every failure the SDK reports is a `MediaMeshError`.
 *
 * - `code` is a number when the server refused a request (`shared.Error.code` of a
 *   data-channel response, or the HTTP status of a failed POST with `code` = status),
 *   and a {@link LocalErrorCode} string for failures detected by the client.
 * - `message` is the server's message, or a description of what the client saw.
 */
export class MediaMeshError extends Error {
  /** Server error code (number) or local error code (string). */
  readonly code: number | LocalErrorCode;
  /** For HTTP failures: the HTTP status; for data-channel requests: the req_id. */
  readonly detail?: { status?: number; reqId?: number; request?: string };

  constructor(code: number | LocalErrorCode, message: string, detail?: MediaMeshError['detail']) {
    super(message);
    this.name = 'MediaMeshError';
    this.code = code;
    this.detail = detail;
  }

  /** True when the server answered with an error (as opposed to a timeout or a local failure). */
  get fromServer(): boolean {
    return typeof this.code === 'number';
  }
}
