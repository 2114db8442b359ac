#!/bin/sh
# Regenerates the expected bytes of the Delegated Management / DAP known-answer tests with
# the openssl CLI (independent of Cardwright's code). The keys are committed; run this only
# to check the vectors: `sh make.sh` rewrites the *.hex files (outputs must not change for the
# deterministic schemes).
set -eu
cd "$(dirname "$0")"
h2b() { xxd -r -p; }
# Token input of INSTALL [for load] (GP 2.3.1 Table C-4), as tokens.txt writes it.
printf %s "$(sed -n 's/^load_token_input=//p' inputs.txt)" | h2b > load_token_input.bin
printf %s "$(sed -n 's/^delete_token_input=//p' inputs.txt)" | h2b > delete_token_input.bin
printf %s "$(sed -n 's/^receipt_input=//p' inputs.txt)" | h2b > receipt_input.bin
printf %s "$(sed -n 's/^lfdb_hash=//p' inputs.txt)" | h2b > lfdb_hash.bin
AES=$(cat token-aes128.hex)
RAES=$(cat receipt-aes128.hex)
# RSA-1024: RSASSA-PKCS1-v1_5 with SHA-1 (GP 2.3.1 B.3.1).
openssl dgst -sha1 -sign token-rsa1024.pem load_token_input.bin | xxd -p -c 1000 > load_token_rsa1024.hex
openssl dgst -sha1 -sign token-rsa1024.pem delete_token_input.bin | xxd -p -c 1000 > delete_token_rsa1024.hex
openssl dgst -sha1 -sign token-rsa1024.pem lfdb_hash.bin | xxd -p -c 1000 > dap_rsa1024.hex
# AES-CMAC (NIST SP 800-38B).
openssl mac -cipher AES-128-CBC -macopt hexkey:$AES -in load_token_input.bin CMAC | tr 'A-F' 'a-f' > load_token_aes.hex
openssl mac -cipher AES-128-CBC -macopt hexkey:$AES -in delete_token_input.bin CMAC | tr 'A-F' 'a-f' > delete_token_aes.hex
openssl mac -cipher AES-128-CBC -macopt hexkey:$RAES -in receipt_input.bin CMAC | tr 'A-F' 'a-f' > receipt_aes.hex
rm -f ./*.bin
