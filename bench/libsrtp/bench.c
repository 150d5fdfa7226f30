/*
 * libsrtp side of ferrelay's SRTP benchmark (bench/srtp-compare.sh).
 *
 * Times srtp_protect / srtp_unprotect on 172-byte RTP packets (12-byte
 * header + 160-byte payload), in batches of BATCH packets with consecutive
 * sequence numbers, exactly as bench/benches/srtp.rs does for ferrelay: the
 * plaintext batch is prepared untimed, protect runs timed over the batch,
 * then unprotect runs timed over the protected batch. Prints one line per
 * suite and operation: "<suite> <protect|unprotect> <median ns/packet>".
 *
 * Built twice by the script: against Debian's libsrtp2 (NSS crypto; NSS is
 * initialised once with NSS_NoDB_Init when WITH_NSS is defined, rather than
 * left to libsrtp) and against the libsrtp + OpenSSL that pylibsrtp bundles.
 */
#include <srtp2/srtp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef WITH_NSS
#include <nss.h>
#endif

#define BATCH 1024
#define PKT 172
#define SLOT 256
#define ROUNDS 11

typedef void (*policy_fn)(srtp_crypto_policy_t *);

/* In libsrtp 2.x the AES-128-CM/80 setter is a macro for the RTP default. */
static void aes_cm_128_80(srtp_crypto_policy_t *p) { srtp_crypto_policy_set_rtp_default(p); }

struct suite {
    const char *name;
    policy_fn rtp;
    policy_fn rtcp;
    int key_len; /* master key + salt */
};

static const struct suite SUITES[] = {
    {"AES_CM_128_HMAC_SHA1_80", aes_cm_128_80, aes_cm_128_80, 30},
    {"AES_CM_128_HMAC_SHA1_32", srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32,
     aes_cm_128_80, 30},
    {"AES_256_CM_HMAC_SHA1_80", srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80,
     srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80, 46},
    {"AES_256_CM_HMAC_SHA1_32", srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32,
     srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80, 46},
    {"AEAD_AES_128_GCM", srtp_crypto_policy_set_aes_gcm_128_16_auth,
     srtp_crypto_policy_set_aes_gcm_128_16_auth, 28},
    {"AEAD_AES_256_GCM", srtp_crypto_policy_set_aes_gcm_256_16_auth,
     srtp_crypto_policy_set_aes_gcm_256_16_auth, 44},
    {"NULL", srtp_crypto_policy_set_null_cipher_hmac_null,
     srtp_crypto_policy_set_null_cipher_hmac_null, 30},
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static srtp_t session(const struct suite *s, unsigned char *key, srtp_ssrc_type_t dir) {
    srtp_policy_t p;
    srtp_t out;
    memset(&p, 0, sizeof p);
    s->rtp(&p.rtp);
    s->rtcp(&p.rtcp);
    p.ssrc.type = dir;
    p.key = key;
    p.window_size = 128;
    if (srtp_create(&out, &p) != srtp_err_status_ok) {
        fprintf(stderr, "srtp_create failed for %s\n", s->name);
        exit(1);
    }
    return out;
}

static void fill(unsigned char *pkt, uint16_t seq) {
    memset(pkt, 0, PKT);
    pkt[0] = 0x80;
    pkt[1] = 0;
    pkt[2] = (unsigned char)(seq >> 8);
    pkt[3] = (unsigned char)seq;
    pkt[8] = 0x12; pkt[9] = 0x34; pkt[10] = 0x56; pkt[11] = 0x78;
    for (int i = 12; i < PKT; i++) pkt[i] = (unsigned char)(i * 7 + seq);
}

int main(int argc, char **argv) {
    int batches = argc > 1 ? atoi(argv[1]) : 200;
    static unsigned char bufs[BATCH][SLOT];
    static int lens[BATCH];
    unsigned char key[64];
#ifdef WITH_NSS
    if (NSS_NoDB_Init(NULL) != SECSuccess) {
        fprintf(stderr, "NSS_NoDB_Init failed\n");
        return 1;
    }
#endif
    if (srtp_init() != srtp_err_status_ok) return 1;
    printf("version %s\n", srtp_get_version_string());
    for (int i = 0; i < 64; i++) key[i] = (unsigned char)(i * 31 + 9);

    for (size_t si = 0; si < sizeof SUITES / sizeof SUITES[0]; si++) {
        const struct suite *s = &SUITES[si];
        srtp_t tx = session(s, key, ssrc_any_outbound);
        srtp_t rx = session(s, key, ssrc_any_inbound);
        double prot[ROUNDS], unprot[ROUNDS];
        uint16_t seq = 1;
        for (int r = 0; r < ROUNDS; r++) {
            uint64_t tp = 0, tu = 0;
            for (int b = 0; b < batches; b++) {
                for (int i = 0; i < BATCH; i++) fill(bufs[i], seq++);
                uint64_t t0 = now_ns();
                for (int i = 0; i < BATCH; i++) {
                    lens[i] = PKT;
                    if (srtp_protect(tx, bufs[i], &lens[i]) != srtp_err_status_ok) {
                        fprintf(stderr, "%s: protect failed\n", s->name);
                        return 1;
                    }
                }
                uint64_t t1 = now_ns();
                for (int i = 0; i < BATCH; i++) {
                    if (srtp_unprotect(rx, bufs[i], &lens[i]) != srtp_err_status_ok ||
                        lens[i] != PKT) {
                        fprintf(stderr, "%s: unprotect failed\n", s->name);
                        return 1;
                    }
                }
                uint64_t t2 = now_ns();
                tp += t1 - t0;
                tu += t2 - t1;
            }
            prot[r] = (double)tp / ((double)batches * BATCH);
            unprot[r] = (double)tu / ((double)batches * BATCH);
        }
        qsort(prot, ROUNDS, sizeof(double), cmp_double);
        qsort(unprot, ROUNDS, sizeof(double), cmp_double);
        printf("%s protect %.1f\n", s->name, prot[ROUNDS / 2]);
        printf("%s unprotect %.1f\n", s->name, unprot[ROUNDS / 2]);
        fflush(stdout);
        srtp_dealloc(tx);
        srtp_dealloc(rx);
    }
    return 0;
}
