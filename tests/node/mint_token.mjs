// Mints a session token with the real libraries, so the Python decoder is tested against
// what browsers actually carry rather than against our own encoder.
//
// stdin:  {"flavor": "v4" | "v5", "secret": "...", "salt": "<cookie name, v5 only>",
//          "claims": {...}, "maxAge": seconds}
// stdout: the compact JWE, nothing else.
//
// With "op": "decode" and "token": "<jwe>" instead of claims/maxAge, it decodes with the same
// library's `decode` and prints the claims as JSON (or exits non-zero), so tokens from our
// Python encoder can be checked against the real thing too.
//
// Both `encode`s overwrite iat, exp (= now + maxAge, whole seconds) and jti; a negative
// maxAge therefore yields an already-expired token.
import { createRequire } from "node:module";

import { decode as decodeV5, encode as encodeV5 } from "@auth/core/jwt";

const require = createRequire(import.meta.url);
const { decode: decodeV4, encode: encodeV4 } = require("next-auth/jwt");

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

const request = JSON.parse(await readStdin());
const { op = "encode", flavor, secret, salt, claims = {}, maxAge, token } = request;
const libraries = {
  v4: { encode: encodeV4, decode: decodeV4 },
  v5: { encode: encodeV5, decode: decodeV5 },
};
const lib = libraries[flavor];
if (!lib) throw new Error(`unknown flavor: ${flavor}`);
if (flavor === "v5" && !salt) throw new Error("v5 needs `salt` (the cookie name)");
// next-auth v4 takes no salt from getToken(); passing one would change its key derivation.
const saltArg = flavor === "v5" ? { salt } : {};
if (op === "encode") {
  process.stdout.write(await lib.encode({ token: claims, secret, maxAge, ...saltArg }));
} else if (op === "decode") {
  process.stdout.write(JSON.stringify(await lib.decode({ token, secret, ...saltArg })));
} else {
  throw new Error(`unknown op: ${op}`);
}
