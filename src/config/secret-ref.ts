import { Type, type Static } from '@sinclair/typebox';

/** A reference to a secret: the name of an environment variable, or a file path. */
export const SecretRef = Type.Union(
  [
    Type.Object({ env: Type.String({ minLength: 1, pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }) }, { additionalProperties: false }),
    Type.Object({ file: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
  ],
  { description: 'Where a secret lives: `{env: NAME}` or `{file: path}`. Never the secret itself.' },
);
export type SecretRef = Static<typeof SecretRef>;
