/** The documented error sets of the key routes, shared by the /v1 and /api/1 route tables. */
import { Errors } from '../errors.js';

export const KMS_ERRORS = [
  Errors.KMS_AUTHORIZATION_FAILED,
  Errors.KMS_CONFIGURATION_INVALID,
  Errors.KMS_UNREACHABLE,
  Errors.KMS_THROTTLED,
  Errors.KMS_ACCOUNT_ISSUE,
];
export const WRAP_ERRORS = [Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS, Errors.NO_PRIMARY_KMS_CONFIGURATION, ...KMS_ERRORS, Errors.KMS_WRAP_FAILED];
export const UNWRAP_ERRORS = [
  Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS,
  Errors.INVALID_PROVIDED_EDEK,
  Errors.KMS_CONFIGURATION_DISABLED,
  ...KMS_ERRORS,
  Errors.KMS_UNWRAP_FAILED,
];
