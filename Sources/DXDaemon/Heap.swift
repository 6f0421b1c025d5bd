import CGlibcExtras
import DXControl
import DXStore
import Foundation

/// How dexad keeps its memory flat over a clinic's day, and what it says about it
/// (docs/RELIABILITY.md, "A clinic day").
///
/// glibc gives each thread that allocates under contention an arena of its own (up to eight
/// per core) and keeps freed pages for the next allocation; a daemon whose scans, analyses
/// and reports allocate tens of MB on dispatch threads that come and go then holds free
/// pages in many arenas: resident memory rose by 5 MB over twelve exams with a flat heap.
/// Two arenas (the machine has two cores; the real-time path is one thread) and the free
/// pages handed back after every control request keep it where the warm-up left it.
/// malloc_trim holds an arena's lock while it walks it: 0.17 ms on average and 0.74 ms at
/// worst over a fragmented 3 MB heap of 10,000 free blocks on this machine, against a line
/// period of 10 ms at the DX-1's fastest (100 lines/s), with lines queued between the link
/// and the decomposition. (Trimming only when no other request was in flight was tried: it
/// ended an 8-exam day at 9.1 MB of anonymous memory, within the spread of days trimming
/// after each request, 6.6 to 9.0 MB; the simpler rule stays.)
enum Heap {
    /// Before the first thread starts.
    static func configure() {
        _ = dx_limit_arenas(2)
    }

    /// Gives the heap's free pages back (malloc_trim): after every control request.
    static func releaseFree() {
        _ = dx_release_free_memory()
    }

    /// Resident memory from /proc/self/status (`VmRSS`, `RssAnon`), the heap from glibc's
    /// mallinfo2, SQLite's and the log ring's shares; nil when /proc cannot be read.
    static func account() -> MemoryMetrics? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        func bytes(_ name: String) -> Int? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .flatMap { Int($0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") }
                .map { $0 * 1024 }
        }
        guard let resident = bytes("VmRSS") else { return nil }
        var heap = dx_heap()
        dx_heap_usage(&heap)
        return MemoryMetrics(residentBytes: resident, anonymousBytes: bytes("RssAnon") ?? resident,
                             heapInUseBytes: Int(clamping: heap.in_use), heapFreeBytes: Int(clamping: heap.free_in_heap),
                             sqliteBytes: ExamStore.sqliteMemoryBytes, logRingBytes: LogRing.shared.bytes,
                             sqliteLimitBytes: Int(ExamStore.sqliteMemoryLimit), logRingLimitBytes: LogRing.shared.maxBytes)
    }
}
