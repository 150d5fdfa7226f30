#!/usr/bin/env python3
"""libsrtp oracle for ferrelay's SRTP interop test (pylibsrtp, which bundles libsrtp 2.x).

Line protocol on stdin/stdout, one request per line, hex for bytes:

    new <name> <SDES suite name> <in|out> <key||salt hex> [auth-only-rtcp]
    protect|unprotect|protect_rtcp|unprotect_rtcp <name> <packet hex>

Each request is answered with `ok [hex]` or `err <reason>`. On start the
oracle prints `ready <libsrtp origin>` or `fatal <reason>` and exits.
"""

import sys


def main() -> int:
    try:
        import pylibsrtp
        from pylibsrtp._binding import ffi, lib
    except Exception as exc:  # noqa: BLE001 - any import failure is fatal for the oracle
        print(f"fatal cannot import pylibsrtp ({exc}); run: python3 -m pip install pylibsrtp", flush=True)
        return 1

    policy_cls = pylibsrtp.Policy
    # libsrtp 2.x srtp_crypto_policy_t: cipher_type, cipher_key_len, auth_type,
    # auth_key_len, auth_tag_len, sec_serv (six ints). AES-256-CM has no DTLS
    # profile in libsrtp, so its policy is written field by field, the way
    # srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80/_32 do.
    SRTP_AES_ICM_256, SRTP_HMAC_SHA1, SEC_SERV_AUTH, SEC_SERV_CONF_AUTH = 5, 3, 2, 3

    profiles = {
        "AES_CM_128_HMAC_SHA1_80": (policy_cls.SRTP_PROFILE_AES128_CM_SHA1_80, None),
        "AES_CM_128_HMAC_SHA1_32": (policy_cls.SRTP_PROFILE_AES128_CM_SHA1_32, None),
        "AES_256_CM_HMAC_SHA1_80": (policy_cls.SRTP_PROFILE_AES128_CM_SHA1_80, (10, 10)),
        "AES_256_CM_HMAC_SHA1_32": (policy_cls.SRTP_PROFILE_AES128_CM_SHA1_80, (4, 10)),
        "AEAD_AES_128_GCM": (policy_cls.SRTP_PROFILE_AEAD_AES_128_GCM, None),
        "AEAD_AES_256_GCM": (policy_cls.SRTP_PROFILE_AEAD_AES_256_GCM, None),
    }

    def crypto_fields(policy, which):
        return ffi.cast("int *", ffi.addressof(policy._policy, which))

    sessions = {}
    keep_alive = []
    print("ready pylibsrtp " + getattr(pylibsrtp, "__version__", "?"), flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        try:
            op = parts[0]
            if op == "new":
                name, suite, direction, key_hex = parts[1:5]
                auth_only_rtcp = "auth-only-rtcp" in parts[5:]
                profile, aes256_tags = profiles[suite]
                key = bytes.fromhex(key_hex)
                policy = policy_cls(
                    key=key,
                    ssrc_type=policy_cls.SSRC_ANY_INBOUND if direction == "in" else policy_cls.SSRC_ANY_OUTBOUND,
                    srtp_profile=profile,
                )
                if aes256_tags:
                    for which, tag in zip(("rtp", "rtcp"), aes256_tags):
                        f = crypto_fields(policy, which)
                        f[0], f[1], f[2], f[3], f[4], f[5] = (
                            SRTP_AES_ICM_256, 46, SRTP_HMAC_SHA1, 20, tag, SEC_SERV_CONF_AUTH)
                    buf = ffi.new("unsigned char[]", key)
                    keep_alive.append(buf)
                    policy._policy.key = buf
                if auth_only_rtcp:
                    crypto_fields(policy, "rtcp")[5] = SEC_SERV_AUTH
                policy.window_size = 1024
                sessions[name] = pylibsrtp.Session(policy)
                print("ok", flush=True)
            else:
                name, data = parts[1], bytes.fromhex(parts[2])
                out = getattr(sessions[name], op)(data)
                print("ok " + bytes(out).hex(), flush=True)
        except Exception as exc:  # noqa: BLE001 - report every failure to the caller
            print("err " + str(exc).replace("\n", " "), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
