/**
 * Maps everything that can go wrong in a request onto the error catalogue. 4xx from
 * Fastify itself (bad JSON, media type, size, validation) get their catalogue entry;
 * anything unexpected becomes code 100 with no internals in the message.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Errors, KeywardError, isKeywardError, type ErrorSpec } from '../errors.js';

const FASTIFY_CODES: Record<string, ErrorSpec> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: Errors.UNSUPPORTED_MEDIA_TYPE,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: Errors.MALFORMED_JSON,
  FST_ERR_CTP_EMPTY_JSON_BODY: Errors.MALFORMED_JSON,
  FST_ERR_CTP_INVALID_JSON_BODY: Errors.MALFORMED_JSON,
  FST_ERR_CTP_BODY_TOO_LARGE: Errors.BODY_TOO_LARGE,
  FST_ERR_CTP_INVALID_TYPE: Errors.UNSUPPORTED_MEDIA_TYPE,
};

export function toKeywardError(error: FastifyError | Error): KeywardError {
  if (isKeywardError(error)) return error;
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    return new KeywardError(Errors.INVALID_REQUEST_BODY, `invalid request: ${fastifyError.message}`);
  }
  const mapped = fastifyError.code === undefined ? undefined : FASTIFY_CODES[fastifyError.code];
  if (mapped) return new KeywardError(mapped, describe(mapped, fastifyError));
  if (error instanceof SyntaxError || fastifyError.statusCode === 400) {
    // JSON.parse failures and secure-json-parse's prototype-poisoning refusals.
    return new KeywardError(Errors.MALFORMED_JSON, 'the body is not valid JSON');
  }
  if (fastifyError.statusCode === 413) return new KeywardError(Errors.BODY_TOO_LARGE, describe(Errors.BODY_TOO_LARGE, fastifyError));
  if (fastifyError.statusCode === 415) return new KeywardError(Errors.UNSUPPORTED_MEDIA_TYPE, describe(Errors.UNSUPPORTED_MEDIA_TYPE, fastifyError));
  return new KeywardError(Errors.UNKNOWN_ERROR, 'unexpected error; the Keyward log has the details', { cause: error });
}

function describe(spec: ErrorSpec, error: FastifyError): string {
  switch (spec) {
    case Errors.UNSUPPORTED_MEDIA_TYPE:
      return 'send the body as JSON with Content-Type: application/json';
    case Errors.BODY_TOO_LARGE:
      return 'the body is larger than this server accepts (KEYWARD_BODY_LIMIT)';
    default:
      return error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ? 'the body is empty; send a JSON object' : 'the body is not valid JSON';
  }
}

/** The catalogue code each error reply was answered with, for the error metric (app.ts). */
const answeredCodes = new WeakMap<FastifyReply, number>();

export function answeredCode(reply: FastifyReply): number | undefined {
  return answeredCodes.get(reply);
}

export function sendError(reply: FastifyReply, error: KeywardError): FastifyReply {
  answeredCodes.set(reply, error.code);
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(error.retryAfterSeconds))));
  return reply.code(error.statusCode).type('application/json; charset=utf-8').send(error.toBody());
}

export function errorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const mapped = toKeywardError(error);
  if (mapped.spec === Errors.UNKNOWN_ERROR) request.log.error({ err: error }, 'unexpected error while serving a request');
  else if (mapped.statusCode >= 500) request.log.warn({ code: mapped.code, reason: mapped.message }, 'request failed');
  return sendError(reply, mapped);
}

/** A path whose percent-encoding does not decode: no route can match it. */
export function badUrlHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendError(reply, new KeywardError(Errors.ROUTE_NOT_FOUND, 'the URL path is not valid percent-encoding'));
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendError(reply, new KeywardError(Errors.ROUTE_NOT_FOUND, `no route ${request.method} ${request.url.split('?')[0]}`));
}
