//! pgp — OpenPGP signatures (RFC 4880 / RFC 9580, v4) with a key the plugin never holds.
//!
//! The credential's `private_key` (an armored `gpg --export-secret-keys` block) and its
//! `passphrase` are host-only fields: the request carries them as nil. Vultrino reads the key
//! (the `openpgp` key format of the keys interface), exports its transferable public key, and
//! signs; this plugin builds the OpenPGP packets around those operations: the v4 signature
//! packet with its hashed subpackets, the armor, the cleartext framework, and the checks of
//! detached signatures (through the host's Ed25519 and RSA verification).

use data_encoding::{BASE64, HEXUPPER};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use vultrino_pdk::keys::{self, KeyError, KeyFormat};
use vultrino_pdk::{actions, Error, Result};

actions! {
    "sign" => sign,
    "sign_cleartext" => sign_cleartext,
    "verify" => verify,
    "get_public_key" => get_public_key,
}

/// The host-only field holding the armored secret key.
const KEY_FIELD: &str = "private_key";

const ALGO_RSA: u8 = 1;
const ALGO_RSA_SIGN: u8 = 3;
const ALGO_EDDSA: u8 = 22;
const ALGO_ED25519: u8 = 27;
const HASH_SHA256: u8 = 8;
const HASH_SHA512: u8 = 10;
const ED25519_OID: [u8; 9] = [0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01];

/// The `pgp_key` credential (the two key fields arrive as nil: the host keeps them).
#[derive(Deserialize)]
pub struct PgpKey {
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub passphrase: Option<String>,
    /// Optional: the key id or fingerprint the stored key must have (a check against a wrong
    /// key being pasted).
    #[serde(default)]
    pub key_id: Option<String>,
}

// --- the public key -----------------------------------------------------------------------------

/// The primary key, read from the transferable public key the host exported.
pub struct PublicKey {
    pub transferable: Vec<u8>,
    pub algorithm: u8,
    pub fingerprint: [u8; 20],
    /// RSA: `(n, e)`; EdDSA: the 32-byte point.
    pub rsa: Option<(Vec<u8>, Vec<u8>)>,
    pub ed25519: Option<[u8; 32]>,
}

impl PublicKey {
    pub fn key_id(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.fingerprint[12..]);
        id
    }
}

fn key_error(e: KeyError, what: &str) -> Error {
    match e {
        KeyError::UnknownField => Error::invalid_credential("private_key is empty"),
        KeyError::BadFormat => Error::invalid_credential(
            "private_key is not an ASCII-armored OpenPGP secret key this plugin reads (export it \
             with `gpg --export-secret-keys --armor KEYID`; v4 keys, protected with AES or not)",
        ),
        KeyError::BadKey if what == "sign" => Error::invalid_credential(
            "the passphrase does not unlock the secret key (check the credential's passphrase \
             field), or the export holds no usable secret for the primary key",
        ),
        KeyError::BadKey => Error::invalid_credential(
            "the key's primary key is not an RSA or Ed25519 signing key",
        ),
        other => Error::from(other),
    }
}

/// One packet: `(tag, body)`; old and new header formats, no partial lengths.
fn packets(data: &[u8]) -> Result<Vec<(u8, &[u8])>> {
    let bad = || Error::invalid_params("not OpenPGP data: a packet header is malformed");
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let first = data[i];
        if first & 0x80 == 0 {
            return Err(bad());
        }
        i += 1;
        let (tag, len) = if first & 0x40 != 0 {
            let o1 = *data.get(i).ok_or_else(bad)? as usize;
            if o1 < 192 {
                i += 1;
                ((first & 0x3f), o1)
            } else if o1 < 224 {
                let o2 = *data.get(i + 1).ok_or_else(bad)? as usize;
                i += 2;
                ((first & 0x3f), ((o1 - 192) << 8) + o2 + 192)
            } else if o1 == 255 {
                let b = data.get(i + 1..i + 5).ok_or_else(bad)?;
                i += 5;
                ((first & 0x3f), u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            } else {
                return Err(Error::invalid_params("partial-length packets are not supported"));
            }
        } else {
            let tag = (first >> 2) & 0x0f;
            match first & 3 {
                0 => {
                    let l = *data.get(i).ok_or_else(bad)? as usize;
                    i += 1;
                    (tag, l)
                }
                1 => {
                    let b = data.get(i..i + 2).ok_or_else(bad)?;
                    i += 2;
                    (tag, u16::from_be_bytes([b[0], b[1]]) as usize)
                }
                2 => {
                    let b = data.get(i..i + 4).ok_or_else(bad)?;
                    i += 4;
                    (tag, u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                }
                _ => (tag, data.len() - i),
            }
        };
        let body = data.get(i..i + len).ok_or_else(bad)?;
        out.push((tag, body));
        i += len;
    }
    Ok(out)
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let out = &self.data[self.at..end];
                self.at = end;
                Ok(out)
            }
            None => Err(Error::invalid_params("an OpenPGP packet is cut short")),
        }
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A multiprecision integer's magnitude bytes (big-endian, as written).
    fn mpi(&mut self) -> Result<&'a [u8]> {
        let bits = self.u16()?;
        self.take((bits + 7) / 8)
    }
}

/// The transferable public key of the credential's key, and what signing needs from it.
pub fn public_key() -> Result<PublicKey> {
    let transferable = keys::openpgp_public_key_with(KEY_FIELD, KeyFormat::OpenPgp)
        .map_err(|e| key_error(e, "public"))?;
    let all = packets(&transferable)?;
    let body = match all.first() {
        Some((6, body)) => *body,
        _ => return Err(Error::failed("the host's public key export has no public key packet")),
    };
    let mut r = Reader { data: body, at: 0 };
    if r.byte()? != 4 {
        return Err(Error::invalid_credential("only v4 keys are supported"));
    }
    r.u32()?;
    let algorithm = r.byte()?;
    let mut rsa = None;
    let mut ed25519 = None;
    match algorithm {
        ALGO_RSA | ALGO_RSA_SIGN => {
            let n = r.mpi()?.to_vec();
            let e = r.mpi()?.to_vec();
            rsa = Some((n, e));
        }
        ALGO_EDDSA => {
            let len = r.byte()? as usize;
            if r.take(len)? != ED25519_OID {
                return Err(Error::invalid_credential("the EdDSA key is not on Ed25519"));
            }
            let point = r.mpi()?;
            if point.len() != 33 || point[0] != 0x40 {
                return Err(Error::invalid_credential("the Ed25519 public key is malformed"));
            }
            let mut q = [0u8; 32];
            q.copy_from_slice(&point[1..]);
            ed25519 = Some(q);
        }
        ALGO_ED25519 => {
            let mut q = [0u8; 32];
            q.copy_from_slice(r.take(32)?);
            ed25519 = Some(q);
        }
        _ => {
            return Err(Error::invalid_credential(
                "the key's primary key is not an RSA or Ed25519 signing key",
            ))
        }
    }
    let mut h = Sha1::new();
    h.update([0x99]);
    h.update((body.len() as u16).to_be_bytes());
    h.update(body);
    let mut fingerprint = [0u8; 20];
    fingerprint.copy_from_slice(&h.finalize());
    Ok(PublicKey {
        transferable: transferable.clone(),
        algorithm,
        fingerprint,
        rsa,
        ed25519,
    })
}

/// The key, checked against the credential's optional `key_id`.
fn credential_key(cred: &PgpKey) -> Result<PublicKey> {
    let key = public_key()?;
    if let Some(want) = cred.key_id.as_deref() {
        let want: String = want
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .trim_start_matches("0x")
            .to_ascii_uppercase();
        if !want.is_empty() {
            let fpr = HEXUPPER.encode(&key.fingerprint);
            if !(fpr == want || (want.len() >= 8 && fpr.ends_with(&want))) {
                return Err(Error::invalid_credential(format!(
                    "key_id is {} but the stored key is {}",
                    want, fpr
                )));
            }
        }
    }
    Ok(key)
}

// --- signing ------------------------------------------------------------------------------------

fn subpacket(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![(data.len() + 1) as u8, kind];
    out.extend_from_slice(data);
    out
}

fn mpi(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let v = &bytes[start..];
    let bits = if v.is_empty() {
        0
    } else {
        (v.len() - 1) * 8 + (8 - v[0].leading_zeros() as usize)
    };
    let mut out = (bits as u16).to_be_bytes().to_vec();
    out.extend_from_slice(v);
    out
}

fn packet(tag: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut out = vec![0xc0 | tag];
    if n < 192 {
        out.push(n as u8);
    } else if n < 8384 {
        out.push((((n - 192) >> 8) + 192) as u8);
        out.push(((n - 192) & 0xff) as u8);
    } else {
        out.push(255);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// A v4 signature packet of `sig_type` over `data`, made by the host with the stored key.
pub fn signature_packet(key: &PublicKey, sig_type: u8, data: &[u8], created: u32) -> Result<Vec<u8>> {
    let mut hashed = subpacket(2, &created.to_be_bytes());
    let mut fpr = vec![4u8];
    fpr.extend_from_slice(&key.fingerprint);
    hashed.extend(subpacket(33, &fpr));
    let mut head = vec![4u8, sig_type, key.algorithm, HASH_SHA256];
    head.extend_from_slice(&(hashed.len() as u16).to_be_bytes());
    head.extend_from_slice(&hashed);
    let mut signed = data.to_vec();
    signed.extend_from_slice(&head);
    signed.extend_from_slice(&[4, 0xff]);
    signed.extend_from_slice(&(head.len() as u32).to_be_bytes());
    let digest = keys::sha256(&signed);
    let material = match key.algorithm {
        ALGO_EDDSA | ALGO_ED25519 => {
            let sig = keys::ed25519_sign_with(KEY_FIELD, KeyFormat::OpenPgp, &digest)
                .map_err(|e| key_error(e, "sign"))?;
            if sig.len() != 64 {
                return Err(Error::failed("the host's Ed25519 signature is not 64 bytes"));
            }
            if key.algorithm == ALGO_EDDSA {
                let mut m = mpi(&sig[..32]);
                m.extend(mpi(&sig[32..]));
                m
            } else {
                sig
            }
        }
        _ => {
            // RSASSA-PKCS1-v1_5 with SHA-256 over the same bytes (the host hashes them)
            let sig = keys::rsa_sign_pkcs1_sha256_with(KEY_FIELD, KeyFormat::OpenPgp, &signed)
                .map_err(|e| key_error(e, "sign"))?;
            mpi(&sig)
        }
    };
    let mut body = head;
    let unhashed = subpacket(16, &key.key_id());
    body.extend_from_slice(&(unhashed.len() as u16).to_be_bytes());
    body.extend_from_slice(&unhashed);
    body.extend_from_slice(&digest[..2]);
    body.extend_from_slice(&material);
    Ok(packet(2, &body))
}

fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00b7_04ce;
    for &b in data {
        crc ^= (b as u32) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4cfb;
            }
        }
    }
    crc & 0x00ff_ffff
}

/// ASCII armor (RFC 4880 6.2) of `data` as a `kind` block ("SIGNATURE", "PUBLIC KEY BLOCK").
pub fn armor(kind: &str, data: &[u8]) -> String {
    let mut out = format!("-----BEGIN PGP {}-----\n\n", kind);
    let b64 = BASE64.encode(data);
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    let crc = crc24(data).to_be_bytes();
    out.push('=');
    out.push_str(&BASE64.encode(&crc[1..]));
    out.push_str(&format!("\n-----END PGP {}-----\n", kind));
    out
}

/// The bytes of an armored block of `kind`, or of base64 text.
fn dearmor(text: &str, kind: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN PGP {}-----", kind);
    let end = format!("-----END PGP {}-----", kind);
    let body: String = match text.find(&begin) {
        Some(at) => {
            let rest = &text[at + begin.len()..];
            let stop = rest.find(&end).ok_or_else(|| {
                Error::invalid_params(format!("the armored block has no `{}` line", end))
            })?;
            let mut lines: Vec<&str> = rest[..stop].lines().map(str::trim).collect();
            while lines.first().map_or(false, |l| l.is_empty() || l.contains(':')) {
                lines.remove(0);
            }
            lines
                .into_iter()
                .filter(|l| !l.is_empty() && !l.starts_with('='))
                .collect()
        }
        None => text.split_whitespace().collect(),
    };
    BASE64.decode(body.as_bytes()).map_err(|_| {
        Error::invalid_params(format!(
            "the signature is neither an armored PGP {} nor base64",
            kind
        ))
    })
}

#[derive(Deserialize)]
pub struct SignParams {
    pub data: String,
    #[serde(default)]
    pub armor: Option<bool>,
}

/// A detached signature of `data` (its UTF-8 bytes, as given): armored, or base64 of the binary
/// packet with `armor = false`.
pub fn sign(params: SignParams, cred: PgpKey) -> Result<String> {
    let key = credential_key(&cred)?;
    let sig = signature_packet(&key, 0x00, params.data.as_bytes(), now())?;
    Ok(if params.armor.unwrap_or(true) {
        armor("SIGNATURE", &sig)
    } else {
        BASE64.encode(&sig)
    })
}

#[derive(Deserialize)]
pub struct CleartextParams {
    pub message: String,
}

/// The cleartext signature framework (RFC 4880 7): the text as hashed is each line without
/// trailing spaces and tabs, joined by CR LF.
fn canonical_text(message: &str) -> Vec<u8> {
    let lines: Vec<&str> = message
        .split('\n')
        .map(|l| l.trim_end_matches('\r').trim_end_matches(|c| c == ' ' || c == '\t'))
        .collect();
    lines.join("\r\n").into_bytes()
}

pub fn sign_cleartext(params: CleartextParams, cred: PgpKey) -> Result<String> {
    let key = credential_key(&cred)?;
    let mut message = params.message.replace("\r\n", "\n");
    if message.ends_with('\n') {
        message.pop(); // the line break before the signature is not part of the text
    }
    let sig = signature_packet(&key, 0x01, &canonical_text(&message), now())?;
    let mut out = String::from("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n");
    for line in message.split('\n') {
        if line.starts_with('-') {
            out.push_str("- "); // dash-escaping
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&armor("SIGNATURE", &sig));
    Ok(out)
}

#[derive(Deserialize)]
pub struct PublicKeyParams {
    #[serde(default)]
    pub armor: Option<bool>,
}

/// The transferable public key (as `gpg --export` writes it): armored, or base64 of the binary.
pub fn get_public_key(params: PublicKeyParams, cred: PgpKey) -> Result<String> {
    let key = credential_key(&cred)?;
    Ok(if params.armor.unwrap_or(true) {
        armor("PUBLIC KEY BLOCK", &key.transferable)
    } else {
        BASE64.encode(&key.transferable)
    })
}

// --- verifying ------------------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct VerifyParams {
    pub data: String,
    pub signature: String,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub valid: bool,
    /// The signing key's id (16 hex digits) and, when the signature names it, fingerprint.
    pub key_id: String,
    pub fingerprint: Option<String>,
    /// When the signature says it was made (RFC 3339, UTC).
    pub created: Option<String>,
    /// Why it is not valid (absent when it is).
    pub reason: Option<String>,
}

/// A parsed v4 signature packet.
struct Sig<'a> {
    sig_type: u8,
    algorithm: u8,
    hash: u8,
    /// The hashed part: version up to the end of the hashed subpackets.
    head: &'a [u8],
    created: Option<u32>,
    issuer: Option<[u8; 8]>,
    issuer_fpr: Option<Vec<u8>>,
    left16: [u8; 2],
    material: Vec<&'a [u8]>,
}

fn subpackets(data: &[u8], sig: &mut Sig<'_>) -> Result<()> {
    let mut r = Reader { data, at: 0 };
    while r.at < data.len() {
        let o1 = r.byte()? as usize;
        let len = if o1 < 192 {
            o1
        } else if o1 < 255 {
            ((o1 - 192) << 8) + r.byte()? as usize + 192
        } else {
            r.u32()? as usize
        };
        if len == 0 {
            return Err(Error::invalid_params("a signature subpacket is empty"));
        }
        let body = r.take(len)?;
        let kind = body[0] & 0x7f;
        let value = &body[1..];
        match kind {
            2 if value.len() == 4 => {
                sig.created = Some(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
            }
            16 if value.len() == 8 => {
                let mut id = [0u8; 8];
                id.copy_from_slice(value);
                sig.issuer = Some(id);
            }
            33 if value.len() == 21 && value[0] == 4 => sig.issuer_fpr = Some(value[1..].to_vec()),
            _ => {}
        }
    }
    Ok(())
}

fn parse_signature(body: &[u8]) -> Result<Sig<'_>> {
    let mut r = Reader { data: body, at: 0 };
    let version = r.byte()?;
    if version != 4 {
        return Err(Error::invalid_params(format!(
            "version {} signatures are not supported (only v4)",
            version
        )));
    }
    let sig_type = r.byte()?;
    let algorithm = r.byte()?;
    let hash = r.byte()?;
    let hashed_len = r.u16()?;
    let hashed = r.take(hashed_len)?;
    let head = &body[..r.at];
    let unhashed_len = r.u16()?;
    let unhashed = r.take(unhashed_len)?;
    let left = r.take(2)?;
    let mut sig = Sig {
        sig_type,
        algorithm,
        hash,
        head,
        created: None,
        issuer: None,
        issuer_fpr: None,
        left16: [left[0], left[1]],
        material: Vec::new(),
    };
    subpackets(hashed, &mut sig)?;
    let created = sig.created;
    subpackets(unhashed, &mut sig)?;
    sig.created = created; // only the hashed creation time counts
    match algorithm {
        ALGO_EDDSA => {
            sig.material.push(r.mpi()?);
            sig.material.push(r.mpi()?);
        }
        ALGO_ED25519 => sig.material.push(r.take(64)?),
        _ => sig.material.push(r.mpi()?),
    }
    Ok(sig)
}

/// RFC 3339 of a Unix time (UTC), by the days-from-civil algorithm in reverse.
fn rfc3339(t: u32) -> String {
    let secs = t as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// DER SubjectPublicKeyInfo of an RSA key (what the host's RSA verification takes).
fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn len(n: usize) -> Vec<u8> {
        if n < 128 {
            vec![n as u8]
        } else if n < 256 {
            vec![0x81, n as u8]
        } else {
            vec![0x82, (n >> 8) as u8, n as u8]
        }
    }
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend(len(body.len()));
        out.extend_from_slice(body);
        out
    }
    fn integer(v: &[u8]) -> Vec<u8> {
        let start = v.iter().position(|&b| b != 0).unwrap_or(v.len().saturating_sub(1));
        let mut body = Vec::new();
        if v.get(start).map_or(true, |&b| b & 0x80 != 0) {
            body.push(0);
        }
        body.extend_from_slice(&v[start..]);
        tlv(0x02, &body)
    }
    let mut ints = integer(n);
    ints.extend(integer(e));
    let rsa_key = tlv(0x30, &ints);
    let mut bits = vec![0u8];
    bits.extend(rsa_key);
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    let algo = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut spki = algo.to_vec();
    spki.extend(tlv(0x03, &bits));
    tlv(0x30, &spki)
}

/// The text a signature of type 0x01 (canonical text) covers: line ends as CR LF.
fn text_bytes(data: &str) -> Vec<u8> {
    data.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

fn check(key: &PublicKey, sig: &Sig<'_>, data: &str) -> std::result::Result<(), String> {
    if let Some(fpr) = &sig.issuer_fpr {
        if fpr.as_slice() != key.fingerprint {
            return Err(format!(
                "made by key {}, not this credential's key {}",
                HEXUPPER.encode(fpr),
                HEXUPPER.encode(&key.fingerprint)
            ));
        }
    } else if let Some(id) = sig.issuer {
        if id != key.key_id() {
            return Err(format!(
                "made by key {}, not this credential's key {}",
                HEXUPPER.encode(&id),
                HEXUPPER.encode(&key.key_id())
            ));
        }
    }
    if sig.algorithm != key.algorithm
        && !(matches!(sig.algorithm, ALGO_RSA | ALGO_RSA_SIGN) && key.rsa.is_some())
    {
        return Err("the signature's algorithm is not the key's".into());
    }
    let mut signed = match sig.sig_type {
        0x00 => data.as_bytes().to_vec(),
        0x01 => text_bytes(data),
        other => return Err(format!("signature type {:#04x} is not a document signature", other)),
    };
    signed.extend_from_slice(sig.head);
    signed.extend_from_slice(&[4, 0xff]);
    signed.extend_from_slice(&(sig.head.len() as u32).to_be_bytes());
    let digest = match sig.hash {
        HASH_SHA256 => keys::sha256(&signed),
        HASH_SHA512 => keys::sha512(&signed),
        other => return Err(format!("hash algorithm {} is not supported (SHA-256 and SHA-512 are)", other)),
    };
    if digest[..2] != sig.left16 {
        return Err("it does not match the data".into());
    }
    let ok = if let Some(q) = key.ed25519 {
        let mut rs = [0u8; 64];
        if sig.algorithm == ALGO_EDDSA {
            let (r, s) = (sig.material[0], sig.material[1]);
            if r.len() > 32 || s.len() > 32 {
                return Err("the signature is malformed".into());
            }
            rs[32 - r.len()..32].copy_from_slice(r);
            rs[64 - s.len()..].copy_from_slice(s);
        } else {
            rs.copy_from_slice(sig.material[0]);
        }
        keys::ed25519_verify(&q, &digest, &rs)
    } else if let Some((n, e)) = &key.rsa {
        let spki = rsa_spki(n, e);
        let mut s = sig.material[0].to_vec();
        while s.len() < n.len() {
            s.insert(0, 0); // the MPI drops leading zeros; PKCS#1 wants the modulus' length
        }
        if sig.hash == HASH_SHA256 {
            keys::rsa_verify_pkcs1_sha256(&spki, &signed, &s)
        } else {
            keys::rsa_verify_pkcs1_sha512(&spki, &signed, &s)
        }
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err("it does not match the data".into())
    }
}

/// Check a detached signature (armored or base64) of `data` against the stored key.
pub fn verify(params: VerifyParams, cred: PgpKey) -> Result<Verdict> {
    let key = credential_key(&cred)?;
    let raw = dearmor(&params.signature, "SIGNATURE")?;
    let all = packets(&raw)?;
    let body = all
        .iter()
        .find(|(tag, _)| *tag == 2)
        .map(|(_, b)| *b)
        .ok_or_else(|| Error::invalid_params("signature holds no OpenPGP signature packet"))?;
    let sig = parse_signature(body)?;
    let key_id = HEXUPPER.encode(&sig.issuer.unwrap_or_else(|| {
        let mut id = [0u8; 8];
        if let Some(f) = &sig.issuer_fpr {
            id.copy_from_slice(&f[12..]);
        }
        id
    }));
    let outcome = check(&key, &sig, &params.data);
    Ok(Verdict {
        valid: outcome.is_ok(),
        key_id,
        fingerprint: sig.issuer_fpr.as_ref().map(|f| HEXUPPER.encode(f)),
        created: sig.created.map(rfc3339),
        reason: outcome.err(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc24_is_the_openpgp_checksum() {
        // no data: the initial value; "123456789": the CRC-24/OPENPGP check value
        assert_eq!(crc24(b""), 0xb704ce);
        assert_eq!(crc24(b"123456789"), 0x21cf02);
    }

    #[test]
    fn mpi_counts_bits_and_drops_leading_zeros() {
        assert_eq!(mpi(&[0, 0, 1]), vec![0, 1, 1]);
        assert_eq!(mpi(&[0x80, 0]), vec![0, 16, 0x80, 0]);
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn cleartext_is_canonicalised() {
        assert_eq!(canonical_text("a  \nb\t\r\nc"), b"a\r\nb\r\nc".to_vec());
    }

    #[test]
    fn packet_lengths_round_trip() {
        for n in [0usize, 191, 192, 8383, 8384, 70000] {
            let p = packet(2, &vec![7u8; n]);
            let parsed = packets(&p).unwrap();
            assert_eq!(parsed.len(), 1);
            assert_eq!(parsed[0].1.len(), n);
        }
    }
}
