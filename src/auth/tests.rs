//! Tests against real peers on loopback: a private dnsmasq serving the SPF,
//! DKIM and DMARC records, keys made by python3-dkim's `dknewkey`, and
//! messages signed and ARC-sealed by Python's `dkim` module (an independent
//! signer).

use super::*;
use crate::testing::{Dnsmasq, txt_record as txt};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const HOST: &str = "mx.example.test";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A resolver asking only `server`, once, waiting 2 s for an answer.
fn resolver(server: SocketAddr) -> TokioResolver {
    resolver_with_timeout(server, Duration::from_secs(2))
}

fn resolver_with_timeout(server: SocketAddr, timeout: Duration) -> TokioResolver {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    );
    let options = builder.options_mut();
    options.timeout = timeout;
    options.attempts = 1;
    builder.build().unwrap()
}

/// Python's `dkim` (Debian's python3-dkim, with python3-authres for ARC):
/// `sign.py MODE KEY SELECTOR DOMAIN [AUTHSERV-ID]` reads a message and
/// writes it with a DKIM-Signature (MODE rsa or ed25519) or an ARC set
/// (MODE arc, from the message's Authentication-Results) prepended.
const SIGNER: &str = r#"
import sys, dkim
mode, key, sel, dom = sys.argv[1:5]
msg = sys.stdin.buffer.read()
priv = open(key, 'rb').read()
hdrs = [b'from', b'to', b'subject', b'date', b'message-id']
if mode == 'arc':
    out = b''.join(dkim.arc_sign(msg, sel.encode(), dom.encode(), priv,
                                 sys.argv[5].encode(), include_headers=hdrs))
else:
    alg = {'ed25519': b'ed25519-sha256', 'sha1': b'rsa-sha1'}.get(mode, b'rsa-sha256')
    out = dkim.sign(msg, sel.encode(), dom.encode(), priv,
                    signature_algorithm=alg, include_headers=hdrs)
if not out:
    sys.exit('signing failed')
sys.stdout.buffer.write(out + msg)
"#;

fn python() -> &'static str {
    // Debian's interpreter, where python3-dkim is installed (a pyenv shim
    // earlier in PATH would not have it).
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn run(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (bash scripts/test.sh installs it)"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Keys made by `dknewkey` (python3-dkim): `rsa` (RSA-2048), `ed`
/// (Ed25519), each with its DKIM TXT record text; made once per test run
/// (RSA generation takes a while) and written into each test's directory.
struct Keys {
    dir: tempfile::TempDir,
}

/// (name, private key file, DKIM record) of each key.
fn key_material() -> &'static [(String, Vec<u8>, String)] {
    static KEYS: std::sync::OnceLock<Vec<(String, Vec<u8>, String)>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        [("rsa", "rsa"), ("ed", "ed25519")]
            .into_iter()
            .map(|(name, kind)| {
                run(
                    Command::new(python())
                        .arg("/usr/bin/dknewkey")
                        .args(["--ktype", kind, name])
                        .current_dir(dir.path()),
                    b"",
                );
                let read =
                    |ext: &str| std::fs::read(dir.path().join(format!("{name}.{ext}"))).unwrap();
                let record = String::from_utf8(read("dns")).unwrap().trim().to_owned();
                (name.to_owned(), read("key"), record)
            })
            .collect()
    })
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        for (name, key, record) in key_material() {
            std::fs::write(dir.path().join(format!("{name}.key")), key).unwrap();
            std::fs::write(dir.path().join(format!("{name}.dns")), record).unwrap();
        }
        Keys { dir }
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.key"))
    }

    fn record(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.dns")))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `message` signed by `domain` with key `key` (selector = key name).
    fn sign(&self, key: &str, domain: &str, message: &[u8]) -> Vec<u8> {
        let mode = if key == "ed" { "ed25519" } else { "rsa" };
        self.sign_with(mode, key, domain, message)
    }

    /// As `sign`, with `mode` rsa, ed25519 or sha1 (rsa-sha1).
    fn sign_with(&self, mode: &str, key: &str, domain: &str, message: &[u8]) -> Vec<u8> {
        run(
            Command::new(python())
                .args(["-c", SIGNER, mode])
                .arg(self.key(key))
                .args([key, domain]),
            message,
        )
    }

    /// `message` (with an `Authentication-Results: sealer; ...` on top)
    /// ARC-sealed by `sealer` with the RSA key, selector `rsa`.
    fn arc_seal(&self, sealer: &str, message: &[u8]) -> Vec<u8> {
        run(
            Command::new(python())
                .args(["-c", SIGNER, "arc"])
                .arg(self.key("rsa"))
                .args(["rsa", sealer, sealer]),
            message,
        )
    }
}

/// The zone every test uses, and the keys its DKIM records publish.
struct Fixture {
    dns: Dnsmasq,
    keys: Keys,
}

impl Fixture {
    fn new() -> Fixture {
        let keys = Keys::new();
        let mut records = vec![
            // example.org: SPF for 127.0.0.1 only, DMARC p=reject (relaxed).
            txt("example.org", "v=spf1 ip4:127.0.0.1 -all"),
            txt("_dmarc.example.org", "v=DMARC1; p=reject"),
            txt("helo.example.org", "v=spf1 ip4:127.0.0.1 -all"),
            txt("softfail.test", "v=spf1 ip4:192.0.2.1 ~all"),
            txt("neutral.test", "v=spf1 ?all"),
            // nodmarc.test: SPF only, no DMARC record.
            txt("nodmarc.test", "v=spf1 ip4:127.0.0.1 -all"),
            txt("quarantine.test", "v=spf1 -all"),
            txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine"),
            txt("_dmarc.strict.test", "v=DMARC1; p=reject; adkim=s; aspf=s"),
            txt("_dmarc.relaxed.test", "v=DMARC1; p=reject"),
            txt("lists.test", "v=spf1 ip4:127.0.0.1 -all"),
            txt("untrusted.test", "v=spf1 ip4:127.0.0.1 -all"),
        ];
        for domain in [
            "example.org",
            "mail.strict.test",
            "mail.relaxed.test",
            "lists.test",
            "untrusted.test",
        ] {
            records.push(txt(
                &format!("rsa._domainkey.{domain}"),
                &keys.record("rsa"),
            ));
            records.push(txt(&format!("ed._domainkey.{domain}"), &keys.record("ed")));
        }
        Fixture {
            dns: Dnsmasq::start(&[vec!["--local=/#/".to_owned()], records].concat()),
            keys,
        }
    }

    fn authenticator(&self, trusted_arc_sealers: &[&str]) -> Authenticator {
        let config = AuthConfig {
            trusted_arc_sealers: trusted_arc_sealers.iter().map(|s| s.to_string()).collect(),
            ..AuthConfig::default()
        };
        Authenticator::new(resolver(self.dns.addr), HOST, &config)
    }
}

fn message(from: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <{from}>\r\nTo: bob@example.test\r\nSubject: Lunch\r\n\
         Date: Sun, 29 Nov 2026 23:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\n{body}"
    )
    .into_bytes()
}

/// `signed` with its body replaced (the signature is left as it was).
fn with_body(signed: &[u8], body: &str) -> Vec<u8> {
    let split = signed
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let mut out = signed[..split + 4].to_vec();
    out.extend_from_slice(body.as_bytes());
    out
}

#[tokio::test]
async fn dkim_signatures_of_an_independent_signer_pass_and_a_changed_body_fails() {
    let f = Fixture::new();
    let auth = f.authenticator(&[]);
    let msg = message("alice@example.org", "See you at noon.\r\n");
    let signed = f.keys.sign(
        "ed",
        "example.org",
        &f.keys.sign("rsa", "example.org", &msg),
    );

    // From a host SPF does not allow, with a MAIL FROM of another domain:
    // only DKIM can authenticate the From: address.
    let r = auth
        .verify(
            &signed,
            OTHER_IP,
            "client.test",
            Some("bounce@nodmarc.test"),
        )
        .await;
    assert_eq!(r.dkim.len(), 2, "{r:#?}");
    let algorithms: Vec<_> = r.dkim.iter().map(|d| d.algorithm.as_str()).collect();
    assert_eq!(algorithms, ["ed25519-sha256", "rsa-sha256"], "{r:#?}");
    for d in &r.dkim {
        assert_eq!(d.result, AuthResult::Pass, "{r:#?}\n{}", f.dns.log());
        assert_eq!(d.domain, "example.org");
        assert_eq!(d.aligned, Some(Alignment::Strict));
    }
    assert_eq!(r.spf.result, AuthResult::Fail, "{r:#?}");
    assert_eq!(r.dmarc.result, AuthResult::Pass, "{r:#?}");
    assert_eq!(r.dmarc.policy, DmarcPolicy::Reject);
    assert_eq!(r.dmarc.disposition, DmarcPolicy::None);
    assert_eq!(r.dmarc_failure(), None);
    assert_eq!(
        r.sender_authenticated(Alignment::Strict),
        Some((Mechanism::Dkim, "example.org".into()))
    );
    assert_eq!(r.temporary_error(), None);
    // SPF failed for the envelope's domain; DKIM and DMARC did not.
    assert_eq!(
        r.any_failed().as_deref(),
        Some("SPF fail (nodmarc.test)"),
        "{r:#?}"
    );

    let changed = with_body(&signed, "See you at one.\r\n");
    let r = auth
        .verify(
            &changed,
            OTHER_IP,
            "client.test",
            Some("bounce@nodmarc.test"),
        )
        .await;
    assert_eq!(r.dkim.len(), 2);
    for d in &r.dkim {
        assert_eq!(d.result, AuthResult::Fail, "{r:#?}");
        assert!(d.reason.as_deref().unwrap().contains("body hash"), "{r:#?}");
    }
    assert_eq!(r.dmarc.result, AuthResult::Fail, "{r:#?}");
    assert_eq!(r.dmarc_failure(), Some(DmarcPolicy::Reject));
    assert_eq!(r.dmarc.disposition, DmarcPolicy::Reject);
    assert_eq!(r.sender_authenticated(Alignment::Relaxed), None);
    let failed = r.any_failed().unwrap();
    assert!(failed.contains("DKIM fail (example.org"), "{failed}");
    assert!(
        failed.contains("DMARC fail (example.org, p=reject)"),
        "{failed}"
    );
}

#[tokio::test]
async fn spf_pass_fail_softfail_neutral_and_none_for_the_mail_from_domain() {
    let f = Fixture::new();
    let auth = f.authenticator(&[]);
    let msg = message("alice@nodmarc.test", "Hello.\r\n");
    for (ip, mail_from, expected) in [
        (LOCALHOST, "a@example.org", AuthResult::Pass),
        (OTHER_IP, "a@example.org", AuthResult::Fail),
        (LOCALHOST, "a@softfail.test", AuthResult::SoftFail),
        (LOCALHOST, "a@neutral.test", AuthResult::Neutral),
        (LOCALHOST, "a@none.test", AuthResult::None),
    ] {
        let r = auth.verify(&msg, ip, "client.test", Some(mail_from)).await;
        assert_eq!(r.spf.result, expected, "{mail_from} from {ip}: {r:#?}");
        assert_eq!(r.spf.identity, SpfIdentity::MailFrom);
        assert_eq!(r.spf.domain, mail_from.split_once('@').unwrap().1);
        assert_eq!(r.temporary_error(), None, "{r:#?}");
        assert_eq!(
            r.any_failed().is_some(),
            expected == AuthResult::Fail,
            "{mail_from}: softfail, neutral and none are not failures: {r:#?}"
        );
    }
}

#[tokio::test]
async fn spf_checks_the_helo_name_when_the_sender_is_null() {
    let f = Fixture::new();
    let auth = f.authenticator(&[]);
    let msg = message("mailer-daemon@helo.example.org", "Bounce.\r\n");
    let r = auth.verify(&msg, LOCALHOST, "helo.example.org", None).await;
    assert_eq!(r.spf.result, AuthResult::Pass, "{r:#?}");
    assert_eq!(r.spf.identity, SpfIdentity::Helo);
    assert_eq!(r.spf.domain, "helo.example.org");
    assert!(
        r.header_value(HOST)
            .contains("spf=pass smtp.helo=helo.example.org;"),
        "{}",
        r.header_value(HOST)
    );
    let r = auth.verify(&msg, OTHER_IP, "helo.example.org", None).await;
    assert_eq!(r.spf.result, AuthResult::Fail, "{r:#?}");
    // An address literal has no SPF record to look up.
    let r = auth.verify(&msg, LOCALHOST, "[127.0.0.1]", None).await;
    assert_eq!(r.spf.result, AuthResult::None, "{r:#?}");
    assert_eq!(r.temporary_error(), None);
}

#[tokio::test]
async fn spf_alone_authenticates_a_sender_whose_domain_publishes_no_dmarc_and_a_forgery_is_not() {
    let f = Fixture::new();
    let auth = f.authenticator(&[]);
    let msg = message("alice@nodmarc.test", "Hello.\r\n");
    let r = auth
        .verify(&msg, LOCALHOST, "client.test", Some("alice@nodmarc.test"))
        .await;
    assert_eq!(r.spf.result, AuthResult::Pass, "{r:#?}");
    assert!(r.dkim.is_empty());
    assert_eq!(r.dmarc.result, AuthResult::None, "{r:#?}");
    assert_eq!(
        r.sender_authenticated(Alignment::Strict),
        Some((Mechanism::Spf, "nodmarc.test".into()))
    );
    assert_eq!(r.any_failed(), None);
    assert_eq!(r.dmarc_failure(), None);

    // A forged From: example.org, from a host its SPF does not list, no DKIM.
    let forged = message("ceo@example.org", "Wire the money.\r\n");
    let r = auth
        .verify(&forged, OTHER_IP, "client.test", Some("ceo@example.org"))
        .await;
    assert_eq!(r.spf.result, AuthResult::Fail, "{r:#?}");
    assert_eq!(r.sender_authenticated(Alignment::Relaxed), None);
    assert_eq!(r.dmarc.result, AuthResult::Fail);
    assert_eq!(r.dmarc_failure(), Some(DmarcPolicy::Reject));
    // The envelope passes SPF for a domain unrelated to From: still not the sender.
    let r = auth
        .verify(&forged, LOCALHOST, "client.test", Some("x@nodmarc.test"))
        .await;
    assert_eq!(r.spf.result, AuthResult::Pass, "{r:#?}");
    assert_eq!(r.spf.aligned, None);
    assert_eq!(r.sender_authenticated(Alignment::Relaxed), None);
    assert_eq!(r.dmarc_failure(), Some(DmarcPolicy::Reject));
}

#[tokio::test]
async fn dmarc_relaxed_alignment_passes_strict_fails_and_quarantine_is_reported() {
    let f = Fixture::new();
    let auth = f.authenticator(&[]);

    // d=mail.relaxed.test for From: relaxed.test, whose record is relaxed.
    let msg = f.keys.sign(
        "rsa",
        "mail.relaxed.test",
        &message("alice@relaxed.test", "Hi.\r\n"),
    );
    let r = auth.verify(&msg, OTHER_IP, "client.test", None).await;
    assert_eq!(r.dkim[0].result, AuthResult::Pass, "{r:#?}");
    assert_eq!(r.dkim[0].aligned, Some(Alignment::Relaxed), "{r:#?}");
    assert_eq!(r.dmarc.result, AuthResult::Pass, "{r:#?}");
    assert_eq!(
        r.sender_authenticated(Alignment::Relaxed),
        Some((Mechanism::Dkim, "mail.relaxed.test".into()))
    );
    assert_eq!(r.sender_authenticated(Alignment::Strict), None);

    // The same for strict.test, whose record asks adkim=s: DMARC fails,
    // though our own relaxed alignment still counts the sender.
    let msg = f.keys.sign(
        "rsa",
        "mail.strict.test",
        &message("alice@strict.test", "Hi.\r\n"),
    );
    let r = auth.verify(&msg, OTHER_IP, "client.test", None).await;
    assert_eq!(r.dkim[0].result, AuthResult::Pass, "{r:#?}");
    assert_eq!(r.dmarc.result, AuthResult::Fail, "{r:#?}");
    assert_eq!(r.dmarc_failure(), Some(DmarcPolicy::Reject));
    assert_eq!(
        r.sender_authenticated(Alignment::Relaxed),
        Some((Mechanism::Dkim, "mail.strict.test".into()))
    );
    assert_eq!(r.sender_authenticated(Alignment::Strict), None);

    // p=quarantine.
    let msg = message("alice@quarantine.test", "Hi.\r\n");
    let r = auth
        .verify(
            &msg,
            LOCALHOST,
            "client.test",
            Some("alice@quarantine.test"),
        )
        .await;
    assert_eq!(r.spf.result, AuthResult::Fail, "{r:#?}");
    assert_eq!(r.dmarc.result, AuthResult::Fail, "{r:#?}");
    assert_eq!(r.dmarc.policy, DmarcPolicy::Quarantine);
    assert_eq!(r.dmarc_failure(), Some(DmarcPolicy::Quarantine));
    assert_eq!(
        r.summary(),
        "SPF fail (quarantine.test), DKIM none, DMARC fail (p=quarantine)"
    );
}

#[tokio::test]
async fn a_dead_dns_server_gives_temperror_never_a_failure() {
    let f = Fixture::new();
    let signed = f.keys.sign(
        "rsa",
        "example.org",
        &message("alice@example.org", "Hi.\r\n"),
    );
    // A port nothing listens on (UDP and TCP refused).
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let auth = Authenticator::new(
        resolver_with_timeout(dead, Duration::from_millis(300)),
        HOST,
        &AuthConfig::default(),
    );
    let r = auth
        .verify(&signed, LOCALHOST, "client.test", Some("alice@example.org"))
        .await;
    assert_eq!(r.spf.result, AuthResult::TempError, "{r:#?}");
    assert_eq!(r.dkim[0].result, AuthResult::TempError, "{r:#?}");
    assert_eq!(r.dmarc.result, AuthResult::TempError, "{r:#?}");
    let why = r.temporary_error().expect("a temporary error");
    assert!(why.contains("SPF temperror (example.org)"), "{why}");
    assert_eq!(r.dmarc_failure(), None, "a DNS failure never refuses");
    assert_eq!(r.any_failed(), None, "{r:#?}");
    assert_eq!(r.sender_authenticated(Alignment::Relaxed), None);
}

#[tokio::test]
async fn checks_slower_than_the_limit_are_given_up_as_temperror() {
    // A DNS server that never answers: every query waits for the timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let auth = Authenticator::new(
        resolver_with_timeout(silent.local_addr().unwrap(), Duration::from_secs(30)),
        HOST,
        &AuthConfig::default(),
    );
    let msg = message("alice@example.org", "Hi.\r\n");
    let started = std::time::Instant::now();
    let r = auth
        .verify_within(
            Duration::from_millis(300),
            &msg,
            LOCALHOST,
            "client.test",
            Some("alice@example.org"),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.spf.result, AuthResult::TempError);
    assert_eq!(r.spf.domain, "example.org");
    assert_eq!(r.dmarc_failure(), None);
    assert_eq!(r.sender_authenticated(Alignment::Relaxed), None);
    let why = r.temporary_error().unwrap();
    assert!(why.contains("checks took longer than 300 ms"), "{why}");
    assert!(
        r.header_value(HOST)
            .contains("spf=temperror (checks took longer than 300 ms)")
    );
}

/// alice@example.org (p=reject) signed by example.org, then a list at
/// `sealer` adds a footer (breaking the signature), records that DKIM and
/// DMARC passed, and seals an ARC set; it reaches us from 127.0.0.1 with
/// MAIL FROM the list's bounce address (SPF pass, not aligned).
fn forwarded_through_a_list(f: &Fixture, sealer: &str, recorded: &str) -> Vec<u8> {
    let signed = f.keys.sign(
        "rsa",
        "example.org",
        &message("alice@example.org", "Original text.\r\n"),
    );
    let mut listed = format!("Authentication-Results: {sealer}; {recorded}\r\n").into_bytes();
    listed.extend_from_slice(&signed);
    listed.extend_from_slice(b"-- \r\nThe list footer.\r\n");
    f.keys.arc_seal(sealer, &listed)
}

#[tokio::test]
async fn a_trusted_arc_sealer_stands_in_for_a_dmarc_failure_an_untrusted_one_does_not() {
    let f = Fixture::new();
    let passed = "dkim=pass header.d=example.org; dmarc=pass header.from=example.org";
    let msg = forwarded_through_a_list(&f, "lists.test", passed);

    let trusting = f.authenticator(&["Lists.Test"]);
    let r = trusting
        .verify(&msg, LOCALHOST, "client.test", Some("bounces@lists.test"))
        .await;
    assert_eq!(r.arc.result, AuthResult::Pass, "{r:#?}\n{}", f.dns.log());
    assert_eq!(r.arc.sets, 1);
    assert_eq!(r.arc.sealer.as_deref(), Some("lists.test"));
    assert!(r.arc.sealer_trusted);
    assert!(
        r.arc
            .sealed_results
            .contains(&"dmarc=pass header.from=example.org".to_owned()),
        "{r:#?}"
    );
    assert_eq!(r.dkim[0].result, AuthResult::Fail, "{r:#?}");
    assert_eq!(r.dmarc.result, AuthResult::Fail, "{r:#?}");
    assert_eq!(r.dmarc.overridden_by_arc.as_deref(), Some("lists.test"));
    assert_eq!(r.dmarc.disposition, DmarcPolicy::None);
    assert_eq!(r.dmarc_failure(), None, "{r:#?}");
    assert!(r.summary().contains("not enforced"), "{}", r.summary());
    let header = r.header_value(HOST);
    assert!(
        header
            .contains("arc=pass (1 sets, sealed by lists.test, trusted) smtp.remote-ip=127.0.0.1"),
        "{header}"
    );

    // The same message when nobody is trusted, and when another sealer is.
    for auth in [f.authenticator(&[]), f.authenticator(&["untrusted.test"])] {
        let r = auth
            .verify(&msg, LOCALHOST, "client.test", Some("bounces@lists.test"))
            .await;
        assert_eq!(r.arc.result, AuthResult::Pass, "{r:#?}");
        assert!(!r.arc.sealer_trusted);
        assert_eq!(r.dmarc.overridden_by_arc, None);
        assert_eq!(r.dmarc_failure(), Some(DmarcPolicy::Reject), "{r:#?}");
    }

    // Sealed by an untrusted domain while a trusted one is configured.
    let other = forwarded_through_a_list(&f, "untrusted.test", passed);
    let r = trusting
        .verify(&other, LOCALHOST, "client.test", Some("bounces@lists.test"))
        .await;
    assert_eq!(r.arc.result, AuthResult::Pass, "{r:#?}");
    assert_eq!(r.dmarc_failure(), Some(DmarcPolicy::Reject), "{r:#?}");

    // An aligned DKIM or SPF pass recorded by the sealer vouches as well.
    for recorded in [
        "dkim=pass (good signature) header.i=@example.org header.s=rsa",
        "spf=pass smtp.mailfrom=alice@example.org",
    ] {
        let msg = forwarded_through_a_list(&f, "lists.test", recorded);
        let r = trusting
            .verify(&msg, LOCALHOST, "client.test", Some("bounces@lists.test"))
            .await;
        assert_eq!(r.dmarc.result, AuthResult::Fail, "{recorded}: {r:#?}");
        assert_eq!(r.dmarc_failure(), None, "{recorded}: {r:#?}");
    }

    // A trusted sealer that recorded no pass for the author does not vouch.
    let failed = forwarded_through_a_list(
        &f,
        "lists.test",
        "dkim=fail header.d=example.org; dmarc=fail header.from=example.org",
    );
    let r = trusting
        .verify(
            &failed,
            LOCALHOST,
            "client.test",
            Some("bounces@lists.test"),
        )
        .await;
    assert_eq!(r.arc.result, AuthResult::Pass, "{r:#?}");
    assert_eq!(r.dmarc_failure(), Some(DmarcPolicy::Reject), "{r:#?}");

    // A chain broken after sealing (the body changed again) vouches for nothing.
    let mut broken = msg.clone();
    broken.extend_from_slice(b"Added later.\r\n");
    let r = trusting
        .verify(
            &broken,
            LOCALHOST,
            "client.test",
            Some("bounces@lists.test"),
        )
        .await;
    assert_eq!(r.arc.result, AuthResult::Fail, "{r:#?}");
    assert_eq!(r.dmarc_failure(), Some(DmarcPolicy::Reject), "{r:#?}");
}

#[tokio::test]
async fn an_rsa_sha1_signature_is_not_accepted() {
    let f = Fixture::new();
    let auth = f.authenticator(&[]);
    let msg = f.keys.sign_with(
        "sha1",
        "rsa",
        "example.org",
        &message("alice@example.org", "Hi.\r\n"),
    );
    assert!(String::from_utf8_lossy(&msg).contains("a=rsa-sha1"));
    let r = auth.verify(&msg, OTHER_IP, "client.test", None).await;
    assert_eq!(r.dkim.len(), 1, "{r:#?}");
    assert_eq!(r.dkim[0].result, AuthResult::Policy, "{r:#?}");
    assert_eq!(r.dkim[0].algorithm, "rsa-sha1");
    assert_eq!(r.sender_authenticated(Alignment::Relaxed), None);
    assert_eq!(r.dmarc.result, AuthResult::Fail, "{r:#?}");
    assert!(
        r.header_value(HOST)
            .contains("dkim=policy (rsa-sha1 is not accepted RFC 8301) header.d=example.org"),
        "{}",
        r.header_value(HOST)
    );
}

#[tokio::test]
async fn at_most_ten_signatures_are_checked_and_the_rest_recorded() {
    let f = Fixture::new();
    let auth = f.authenticator(&[]);
    let mut msg = message("alice@example.org", "Hi.\r\n");
    for _ in 0..MAX_DKIM_SIGNATURES + 2 {
        msg = f.keys.sign("ed", "example.org", &msg);
    }
    let r = auth.verify(&msg, OTHER_IP, "client.test", None).await;
    assert_eq!(r.dkim.len(), MAX_DKIM_SIGNATURES + 2, "{r:#?}");
    let (checked, rest) = r.dkim.split_at(MAX_DKIM_SIGNATURES);
    assert!(
        checked.iter().all(|d| d.result == AuthResult::Pass),
        "{r:#?}"
    );
    for d in rest {
        assert_eq!(d.result, AuthResult::Policy, "{r:#?}");
        assert_eq!(d.domain, "example.org");
        assert_eq!(
            d.reason.as_deref(),
            Some("not checked: more than 10 signatures")
        );
    }
    assert_eq!(r.dmarc.result, AuthResult::Pass);
    let queries = f
        .dns
        .log()
        .matches("query[TXT] ed._domainkey.example.org")
        .count();
    assert_eq!(queries, MAX_DKIM_SIGNATURES, "{}", f.dns.log());
}

#[tokio::test]
async fn the_header_and_the_summary_say_what_was_checked() {
    let f = Fixture::new();
    let auth = f.authenticator(&[]);
    let signed = f.keys.sign(
        "rsa",
        "example.org",
        &message("alice@example.org", "Hi.\r\n"),
    );
    let r = auth
        .verify(&signed, LOCALHOST, "client.test", Some("alice@example.org"))
        .await;
    assert_eq!(
        r.header_value(HOST),
        "Authentication-Results: mx.example.test;\r\n\
         \tspf=pass smtp.mailfrom=alice@example.org;\r\n\
         \tdkim=pass header.d=example.org header.s=rsa header.a=rsa-sha256;\r\n\
         \tdmarc=pass header.from=example.org policy.dmarc=reject;\r\n\
         \tarc=none\r\n"
    );
    assert_eq!(
        r.summary(),
        "SPF pass (example.org), DKIM pass (example.org), DMARC pass (p=reject)"
    );
    // Our own header is what strip_own_results removes next time.
    let mut again = r.header_value(HOST).into_bytes();
    again.extend_from_slice(&signed);
    assert_eq!(&*strip_own_results(&again, HOST), &signed[..]);

    // Storage: serde round trip (TOML here; any serde format works).
    let stored = toml::to_string(&r).unwrap();
    let back: AuthResults = toml::from_str(&stored).unwrap();
    assert_eq!(back, r);
}

#[tokio::test]
async fn client_supplied_values_cannot_split_the_header() {
    let f = Fixture::new();
    let auth = f.authenticator(&[]);
    let msg = message("alice@nodmarc.test", "Hi.\r\n");
    let r = auth
        .verify(
            &msg,
            LOCALHOST,
            "client.test",
            Some("\"a b\r\nX-Evil: 1\"@nodmarc.test"),
        )
        .await;
    let header = r.header_value(HOST);
    assert_eq!(header.matches("\r\n").count(), 5, "{header}");
    assert!(!header.contains("\r\nX-Evil"), "{header}");
    assert!(
        header.contains("smtp.mailfrom=\"\\\"a bX-Evil: 1\\\"@nodmarc.test\""),
        "{header}"
    );
}

#[test]
fn verify_is_send_so_the_accept_path_can_spawn_it() {
    fn send<T: Send>(_: T) {}
    let auth = Authenticator::new(
        resolver("127.0.0.1:9".parse().unwrap()),
        HOST,
        &AuthConfig::default(),
    );
    send(auth.verify(b"", LOCALHOST, "h", None));
}

#[test]
fn the_auth_section_is_read_and_bad_values_are_refused_by_key() {
    use crate::config::Config;
    let load = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boxtrap.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), Vec::new())
    };
    let c = load("").unwrap();
    assert_eq!(c.auth, AuthConfig::default());
    assert!(c.auth.dmarc_reject);
    assert_eq!(c.auth.alignment, Alignment::Relaxed);
    assert_eq!(c.auth.authserv_id_or("mx.example.test"), "mx.example.test");

    let c = load(
        "[auth]\nauthserv_id = \"auth.example.test\"\ndmarc_reject = false\n\
         alignment = \"strict\"\ntrusted_arc_sealers = [\"lists.example.org\"]\n\
         challenge_unauthenticated = false\n\
         challenge_unauthenticated_domains = [\"Example.COM\"]\n",
    )
    .unwrap();
    assert_eq!(
        c.auth.authserv_id_or("mx.example.test"),
        "auth.example.test"
    );
    assert!(!c.auth.dmarc_reject);
    assert_eq!(c.auth.alignment, Alignment::Strict);
    assert!(c.auth.is_trusted_sealer("LISTS.example.org."));
    assert!(!c.auth.is_trusted_sealer("example.org"));
    assert!(c.auth.challenges_unauthenticated("example.com"));
    assert!(!c.auth.challenges_unauthenticated("example.net"));

    for (text, key) in [
        ("[auth]\nalignment = \"loose\"", "auth.alignment"),
        (
            "[auth]\ntrusted_arc_sealers = [\"not a domain\"]",
            "auth.trusted_arc_sealers",
        ),
        (
            "[auth]\nchallenge_unauthenticated_domains = [\"-bad-.example\"]",
            "auth.challenge_unauthenticated_domains",
        ),
        ("[auth]\nauthserv_id = \"mx;evil\"", "auth.authserv_id"),
        ("[auth]\ndmarc_rejects = true", "dmarc_rejects"),
    ] {
        let e = load(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
}

#[test]
fn domain_names_are_checked_by_rfc_1035_rules() {
    for good in [
        "example.org",
        "a-b.example.org.",
        "localhost",
        "_dmarc.x.test",
        "1.test",
    ] {
        assert!(is_domain_name(good), "{good}");
    }
    let long_label = format!("{}.test", "a".repeat(64));
    for bad in [
        "",
        ".",
        "a..b",
        "-a.test",
        "a-.test",
        "a b.test",
        "a@b.test",
        &long_label,
    ] {
        assert!(!is_domain_name(bad), "{bad}");
    }
}
