//! The open-files budget (`disk::files`): more logs than files, all served.

use super::*;

/// Descriptors this process holds open on files under `dir`.
fn open_files_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("procfs")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_logs_than_open_files_are_all_written_and_read_within_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical");
    let cfg = DiskBufferConfig {
        max_open_files: 3,
        ..config(&root)
    };
    let buffer = open(&cfg).await;
    let tenants: Vec<String> = (0..40).map(|t| format!("tenant-{t}")).collect();
    for round in 0..3u32 {
        let appends = tenants.iter().enumerate().map(|(t, name)| {
            let buffer = Arc::clone(&buffer);
            let id = round * 100 + t as u32;
            async move { buffer.append(batch(name, id, 512)).await }
        });
        for result in futures::future::join_all(appends).await {
            result.expect("every log gets a file in turn");
        }
        // Readers and position files hold nothing between operations: what is open is the
        // writers' active segments, within the budget.
        assert!(open_files_under(&root) <= 3, "{}", open_files_under(&root));
    }
    let mut all = streams(&buffer, Signal::Traces);
    assert_eq!(all.len(), 40);
    for (t, name) in tenants.iter().enumerate() {
        let stream = all.get_mut(name.as_str()).expect("stream");
        let got = drain_ids(stream, 3).await;
        let t = t as u32;
        assert_eq!(got, vec![t, 100 + t, 200 + t], "{name}");
    }
    assert!(open_files_under(&root) <= 3, "{}", open_files_under(&root));
    buffer.close().await.expect("close");
}
