"""A self-signed certificate for the box (`[server] tls = true`), made once and kept in data_dir/tls/.

Browsers give a page the microphone only in a secure context, so a phone on the LAN needs HTTPS.
The certificate names every way the box is reached (its mDNS name, host name, interface
addresses, from edgevoice.server.identity); it is made again when one of those is missing from it
or it is about to expire.
"""

from __future__ import annotations

import datetime
import logging
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgevoice.atomic import write_atomic
from edgevoice.config import Config
from edgevoice.errors import ConfigError
from edgevoice.server.identity import Identity, IPAddress, box_identity

_log = logging.getLogger(__name__)

TLS_DIR = "tls"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALID_DAYS = 825
"""Apple's limit for a TLS server certificate; iOS refuses a longer one even when told to trust it."""
RENEW_BEFORE_DAYS = 30


def certificate_path(config: Config) -> Path:
    """The certificate the box serves with, when it serves TLS: the one configured, or its own."""
    return config.server.tls_cert or config.data_dir / TLS_DIR / CERT_FILE


def server_context(config: Config, box_name: str, secure: bool = True) -> ssl.SSLContext | None:
    """The TLS context to listen with (None: plain HTTP), making the self-signed certificate when secure asks for it."""
    settings = config.server
    cert, key = settings.tls_cert, settings.tls_key
    if (cert is None or key is None) and secure:
        try:
            cert, key = ensure_certificate(config.data_dir / TLS_DIR, box_identity(box_name))
        except OSError as err:
            raise ConfigError(f"cannot make a TLS certificate in {config.data_dir / TLS_DIR}: {err}") from None
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"cannot use TLS certificate {cert} / {key}: {err}") from None
    return context


def ensure_certificate(directory: Path, identity: Identity, now: datetime.datetime | None = None) -> tuple[Path, Path]:
    """The (cert, key) paths in directory: kept if still good for identity, else made anew."""
    now = now or datetime.datetime.now(datetime.UTC)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    reason = _stale(cert_path, key_path, identity, now)
    if reason is None:
        return cert_path, key_path
    _log.info("making a self-signed TLS certificate in %s (%s)", directory, reason)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, identity, now)
    # the key first: a crash between the two leaves a pair that does not match, made anew next start
    write_atomic(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        0o600,
    )
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _stale(cert_path: Path, key_path: Path, identity: Identity, now: datetime.datetime) -> str | None:
    """Why the certificate on disk will not do, or None if it will."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        return "none yet"
    except (OSError, ValueError, TypeError) as err:
        return f"unreadable: {err}"
    if key.public_key() != cert.public_key():
        return "key and certificate do not match"
    if cert.not_valid_after_utc - now < datetime.timedelta(days=RENEW_BEFORE_DAYS):
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subject alternative names"
    missing = sorted(identity.names - {name.lower() for name in san.get_values_for_type(x509.DNSName)})
    missing += sorted(str(ip) for ip in identity.addresses - set(san.get_values_for_type(x509.IPAddress)))
    if missing:
        return f"does not name {', '.join(missing)}"
    return None


def _self_signed(key: ec.EllipticCurvePrivateKey, identity: Identity, now: datetime.datetime) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.common_name)])
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in sorted(identity.names)]
    names += [x509.IPAddress(ip) for ip in _sorted(identity.addresses)]
    not_before = now - datetime.timedelta(hours=1)  # a phone whose clock is a little behind
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _sorted(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return sorted(addresses, key=lambda ip: (ip.version, int(ip)))
