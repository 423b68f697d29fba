//! The store's rules on a real directory: the size bound, the start-up scan
//! and its races with the first writes, purges.

use super::*;

fn meta(name: &str) -> Meta {
    Meta {
        cluster: "c1".into(),
        name: name.into(),
        fetched: SystemTime::now(),
        confirmed: SystemTime::now(),
        etag: None,
        last_modified: None,
    }
}

fn wait_scanned(store: &DiskStore) {
    while !lock(&store.index).complete {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn bounded_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), 10_000);
    wait_scanned(&store);
    for i in 0..10 {
        store.write(&meta(&format!("f{i}")), &[7u8; 3000], 0);
        if i >= 1 {
            // f0 stays in use.
            assert!(store.read("c1", "f0").is_some(), "after f{i}");
        }
    }
    assert!(store.bytes() <= 10_000);
    assert!(store.read("c1", "f9").is_some());
    assert!(store.read("c1", "f5").is_none());
    let on_disk: u64 = fs::read_dir(dir.path().join("entries"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 10_000, "{on_disk}");
}

#[test]
fn start_removes_temp_files_and_keeps_foreign_ones() {
    let dir = tempfile::tempdir().unwrap();
    let entries = dir.path().join("entries");
    fs::create_dir_all(&entries).unwrap();
    fs::write(
        entries.join(format!("{}.3.tmp", "a".repeat(NAME_LEN))),
        b"torn",
    )
    .unwrap();
    fs::write(entries.join("README"), b"not ours").unwrap();
    let store = DiskStore::open(dir.path(), 1 << 20);
    wait_scanned(&store);
    let mut left: Vec<String> = fs::read_dir(&entries)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, vec!["README".to_owned()]);
    assert!(store.writable());
}

#[test]
fn purge_by_name_ignores_case() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), 1 << 20);
    wait_scanned(&store);
    store.write(&meta("SEP1.cnf.xml"), b"x", 0);
    store.write(&meta("other"), b"y", 0);
    store.purge(Some("sep1.CNF.xml"));
    assert!(store.read("c1", "SEP1.cnf.xml").is_none());
    assert!(store.read("c1", "other").is_some());
}

#[test]
fn the_start_up_scan_spares_the_writes_running_alongside_it() {
    let dir = tempfile::tempdir().unwrap();
    let entries = dir.path().join("entries");
    let store = DiskStore::open_unscanned(dir.path(), 1 << 20);
    // What an earlier run left, and a write of this run caught mid-way.
    fs::write(
        entries.join(format!("{}.1f2e-3.tmp", "b".repeat(NAME_LEN))),
        b"torn",
    )
    .unwrap();
    fs::write(dir.path().join("tables.json.1f2e-4.tmp"), b"{").unwrap();
    let in_progress = entries.join(store.temp_name(&"c".repeat(NAME_LEN)));
    fs::write(&in_progress, b"being written").unwrap();
    store.scan();
    assert!(in_progress.exists(), "this run's write was deleted");
    assert_eq!(fs::read_dir(&entries).unwrap().count(), 1);
    assert!(!dir.path().join("tables.json.1f2e-4.tmp").exists());
    store.write(&meta("after"), b"x", 0);
    assert!(store.writable());
    assert!(store.read("c1", "after").is_some());
}

#[test]
fn what_is_removed_during_the_scan_is_neither_indexed_nor_served() {
    let dir = tempfile::tempdir().unwrap();
    let earlier = DiskStore::open(dir.path(), 1 << 20);
    wait_scanned(&earlier);
    earlier.write(&meta("purged"), &[1u8; 500], 0);
    earlier.write(&meta("kept"), &[2u8; 700], 0);
    drop(earlier);

    let store = DiskStore::open_unscanned(dir.path(), 1 << 20);
    let (listed, _) = store.list();
    assert_eq!(listed.len(), 2);
    // A purge between the scan's listing and its indexing.
    store.purge(Some("PURGED"));
    store.index_listed(listed);
    assert!(store.read("c1", "purged").is_none());
    assert!(store.read("c1", "kept").is_some());
    let on_disk: u64 = store
        .entry_names()
        .map(|f| fs::metadata(store.entries.join(f)).unwrap().len())
        .sum();
    assert_eq!(
        store.bytes(),
        on_disk,
        "the index counts only what is on disk"
    );
}
