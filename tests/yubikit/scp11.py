#!/usr/bin/env python3
"""An independent SCP11 host against the card in a PC/SC reader: Yubico's yubikit
(PyPI yubikey-manager) over pyscard, nothing of Cardwright's.

    scp11.py READER            SCP11b to the factory key set (KID 13, KVN 01), then GET DATA
                               66 inside the channel.
    scp11.py READER --11a KVN  also: over SCP03 with the GP test keys, load a fresh CA's
                               public key as the OCE trust anchor (PUT KEY, KID 10) and
                               generate an SCP11a key pair (GENERATE EC KEY, KID 11), both
                               at KVN; then SCP11a with an X.509 OCE certificate of that CA
                               (PERFORM SECURITY OPERATION, MUTUAL AUTHENTICATE).
    scp11.py READER --11b-issued KVN CA_PEM
                               also: read the X.509 chain that `cardwright card scp11 setup
                               --variant 11b --kvn KVN` stored (KID 13), check that the CA in
                               CA_PEM issued it (signatures, keyAgreement), and open SCP11b
                               with its leaf.

Prints one "OK ..." line per channel opened; any failure is an exception (exit 1).
Run by crates/cardwright/tests/pcsc_scp11.rs under CARDWRIGHT_PCSC_TESTS=1.
"""
import datetime
import hashlib
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smartcard.System import readers
from ykman.pcsc import ScardSmartCardConnection
from yubikit.core.smartcard.scp import (
    KeyRef,
    Scp03KeyParams,
    Scp11KeyParams,
    StaticKeys,
)
from yubikit.securitydomain import SecurityDomainSession


def connect(name):
    for r in readers():
        if name in str(r):
            return ScardSmartCardConnection(r.createConnection())
    raise SystemExit(f"no reader named {name!r} in {[str(r) for r in readers()]}")


def inside(sd):
    """GET DATA 66 (card recognition data) through the secure channel: proves the session
    keys and MAC chaining agree (yubikit checks the R-MAC and decrypts)."""
    data = sd.get_data(0x66)
    return f"GET DATA 66 inside the channel: {len(data)} bytes"


def scp11b(name):
    conn = connect(name)
    sd = SecurityDomainSession(conn)
    ref = KeyRef(0x13, 0x01)
    chain = sd.get_certificate_bundle(ref)
    leaf = chain[-1]
    fp = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    sd.authenticate(Scp11KeyParams(ref, leaf.public_key()))
    print(f"OK SCP11b: {len(chain)} certificate(s), leaf SHA-256 {fp}; {inside(sd)}")
    conn.close()


def scp11b_issued(name, kvn, ca_pem):
    with open(ca_pem, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    conn = connect(name)
    sd = SecurityDomainSession(conn)
    ref = KeyRef(0x13, kvn)
    chain = sd.get_certificate_bundle(ref)
    if not chain:
        raise SystemExit(f"no certificate for KID 13 KVN {kvn:02X}")
    issuer = ca
    for c in chain:
        if c.fingerprint(hashes.SHA256()) == ca.fingerprint(hashes.SHA256()):
            continue  # the CA itself, if the card keeps it in the chain
        if c.issuer != issuer.subject:
            raise SystemExit(f"{c.subject.rfc4514_string()}: issuer is not {issuer.subject}")
        # Raises InvalidSignature unless the issuer's key signed it.
        issuer.public_key().verify(
            c.signature, c.tbs_certificate_bytes, ec.ECDSA(c.signature_hash_algorithm)
        )
        issuer = c
    usage = chain[-1].extensions.get_extension_for_class(x509.KeyUsage)
    if not (usage.critical and usage.value.key_agreement):
        raise SystemExit("the SD certificate lacks a critical keyAgreement key usage")
    sd.authenticate(Scp11KeyParams(ref, chain[-1].public_key()))
    print(
        f"OK SCP11b issued: KVN {kvn:02X}, {len(chain)} X.509 certificate(s) from "
        f"{ca.subject.rfc4514_string()}; {inside(sd)}"
    )
    conn.close()


def cert(subject, public_key, issuer, issuer_key, ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    if not ca:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return b.sign(issuer_key, hashes.SHA256())


def scp11a(name, kvn):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    oce_key = ec.generate_private_key(ec.SECP256R1())
    oce_cert = cert("yubikit OCE", oce_key.public_key(), "yubikit CA", ca_key, False)

    conn = connect(name)
    sd = SecurityDomainSession(conn)
    sd.authenticate(Scp03KeyParams(ref=KeyRef(0x01, 0x00), keys=StaticKeys.default()))
    sd.put_key(KeyRef(0x10, kvn), ca_key.public_key())
    pk_sd = sd.generate_ec_key(KeyRef(0x11, kvn))
    conn.close()

    conn = connect(name)
    sd = SecurityDomainSession(conn)
    sd.authenticate(
        Scp11KeyParams(
            KeyRef(0x11, kvn),
            pk_sd,
            oce_ref=KeyRef(0x10, kvn),
            sk_oce_ecka=oce_key,
            certificates=[oce_cert],
        )
    )
    print(f"OK SCP11a: KVN {kvn:02X}, X.509 OCE certificate; {inside(sd)}")
    conn.close()


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    name = sys.argv[1]
    scp11b(name)
    if "--11a" in sys.argv:
        scp11a(name, int(sys.argv[sys.argv.index("--11a") + 1], 0))
    if "--11b-issued" in sys.argv:
        i = sys.argv.index("--11b-issued")
        scp11b_issued(name, int(sys.argv[i + 1], 0), sys.argv[i + 2])


if __name__ == "__main__":
    main()
