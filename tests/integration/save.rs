//! `--save-dir`: bodies are created new and renamed into place, never written through a link planted
//! in the directory; a body that cannot be saved here is said to be our problem, not the server's,
//! and the connection goes on serving the other URLs.

use std::fs;
use std::os::unix::fs::symlink;

use crate::common::*;

#[test]
fn links_planted_in_the_save_dir_are_never_followed() {
    let server = Hostile::replies(|r| Reply::Send(ok(r.path.as_bytes())));
    let save = tempdir();
    let elsewhere = tempdir();
    // What a hostile local user could plant: a stale part and a final name, both links to files
    // ringfetch (often root) must not overwrite with a server's bytes.
    let victim_part = elsewhere.path().join("victim-part");
    let victim_final = elsewhere.path().join("victim-final");
    fs::write(&victim_part, "precious").unwrap();
    fs::write(&victim_final, "precious").unwrap();
    symlink(&victim_part, save.path().join(".0.part")).unwrap();
    symlink(&victim_final, save.path().join("1")).unwrap();
    let list = vec![server.url("/zero"), server.url("/one")];
    let out = run_fetch(&list, &["--save-dir", arg(save.path())]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(saved(save.path(), 0).as_deref(), Some(&b"/zero"[..]));
    assert_eq!(saved(save.path(), 1).as_deref(), Some(&b"/one"[..]));
    for name in ["0", "1"] {
        let meta = fs::symlink_metadata(save.path().join(name)).unwrap();
        assert!(meta.file_type().is_file(), "{name} is a file of its own");
    }
    assert_eq!(fs::read_to_string(&victim_part).unwrap(), "precious");
    assert_eq!(fs::read_to_string(&victim_final).unwrap(), "precious");
    assert_eq!(entries(save.path()), vec!["0".to_string(), "1".to_string()]);
}

#[test]
fn a_body_that_cannot_be_saved_is_a_local_error_and_the_connection_carries_on() {
    let dir = tempdir();
    let Some(small) = Tmpfs::mount(&dir.path().join("small"), "64k") else {
        eprintln!("SKIPPED a_body_that_cannot_be_saved_…: cannot mount a tmpfs (needs root)");
        return;
    };
    let big = vec![b'b'; 200 * 1024];
    let server = Hostile::replies(move |r| {
        Reply::Send(match r.path.as_str() {
            "/big" => ok(&big),
            path => ok(path.as_bytes()),
        })
    });
    let list = vec![
        server.url("/s0"),
        server.url("/big"),
        server.url("/s2"),
        server.url("/s3"),
    ];
    let out = run_fetch(
        &list,
        &[&ONE_CONN[..], &["--save-dir", arg(&small.0)]].concat(),
    );
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(1);
    assert_error(r, "io");
    let message = r["error"].as_str().unwrap_or_default();
    assert!(message.contains("not the server's"), "{r}");
    assert_eq!(r["status"], 200, "{r}");
    for i in [0u64, 2, 3] {
        let path = format!("/s{i}");
        assert_response(out.result(i), 200, path.len() as u64);
        assert_eq!(saved(&small.0, i), Some(path.into_bytes()));
    }
    assert_eq!(server.connections(), 1, "the connection was not torn down");
    assert!(!entries(&small.0).iter().any(|e| e.ends_with(".part")));
}
