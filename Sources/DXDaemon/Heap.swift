import CGlibcExtras
import DXControl
import DXStore
import Foundation
import Synchronization

/// How dexad keeps its memory flat over a clinic's day, and what it says about it
/// (docs/RELIABILITY.md, "A clinic day").
///
/// glibc gives each thread that allocates under contention an arena of its own (up to eight
/// per core) and keeps freed pages for the next allocation; a daemon whose scans, analyses
/// and reports allocate tens of MB on dispatch threads that come and go then holds free
/// pages in many arenas: resident memory rose by 5 MB over twelve exams with a flat heap.
/// Two arenas (the machine has two cores; the real-time path is one thread) and the free
/// pages handed back after control requests (`HeapTrimmer`) keep it where the warm-up left it.
public enum Heap {
    /// At most two malloc arenas: called first thing in dexad's `main`, before the daemon's
    /// threads allocate (dexad.service also sets glibc.malloc.arena_max=2, which holds from
    /// the process's first instruction). False if glibc refused.
    @discardableResult
    public static func configure() -> Bool {
        dx_limit_arenas(2) != 0
    }

    /// Gives the heap's free pages back (malloc_trim).
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
                             sqliteBytes: ExamStore.sqliteMemoryBytes, sqlitePageCacheBytes: ExamStore.sqlitePageCacheBytes,
                             logRingBytes: LogRing.shared.heapBytes, sqliteLimitBytes: Int(ExamStore.sqliteMemoryLimit),
                             logRingLimitBytes: LogRing.shared.maxHeapBytes)
    }
}

/// When to trim: after a request, at most once a second; a request inside the second after
/// a trim gets one at the second's end instead (so the last request of a burst is always
/// followed by one). A scan, a calibration, an analysis or a report frees tens of MB when
/// it ends; glibc keeps freed pages for the next allocation, so resident memory would rise
/// to the day's largest job and stay there.
///
/// malloc_trim holds an arena's lock while it walks it: 0.17 ms on average and 0.74 ms at
/// worst over a fragmented 3 MB heap of 10,000 free blocks on this machine (docs/
/// PERFORMANCE.md), against a line period of 10 ms at the DX-1's fastest (100 lines/s),
/// with lines queued between the link and the decomposition. Once a second bounds that to
/// under 0.1 % of the time while a console polls during a scan. (Trimming only when no other
/// request was in flight was tried: it ended an 8-exam day at 9.1 MB of anonymous memory,
/// against 6.6 MB trimming after each request.)
struct TrimSchedule: Sendable, Equatable {
    static let interval: Duration = .seconds(1)
    /// When the last trim ran, on the daemon's clock; a trim at the end of a second is due.
    private(set) var last: Duration?
    private(set) var due = false

    enum Decision: Equatable { case now, at(Duration), nothing }

    /// A request ended at `now`.
    mutating func requestEnded(at now: Duration) -> Decision {
        if due { return .nothing }
        if let last, now - last < Self.interval {
            due = true
            return .at(last + Self.interval)
        }
        last = now
        return .now
    }

    /// The trim that was due ran at `now`.
    mutating func ran(at now: Duration) {
        due = false
        last = now
    }
}

/// Trims the heap after control requests on `TrimSchedule`'s rule, on the daemon's clock.
final class HeapTrimmer: Sendable {
    private let schedule = Mutex(TrimSchedule())
    private let now: @Sendable () -> Duration
    private let sleep: @Sendable (Duration) async -> Void
    private let trim: @Sendable () -> Void

    /// `now`: time on the daemon's clock; `sleep`: waits that long on it.
    init(now: @escaping @Sendable () -> Duration, sleep: @escaping @Sendable (Duration) async -> Void,
         trim: @escaping @Sendable () -> Void = { Heap.releaseFree() }) {
        self.now = now
        self.sleep = sleep
        self.trim = trim
    }

    /// On the daemon's clock.
    convenience init(clock: some Clock<Duration>) {
        let start = clock.now
        self.init(now: { start.duration(to: clock.now) }, sleep: { d in try? await clock.sleep(for: d) })
    }

    /// A request ended.
    func requestEnded() {
        switch schedule.withLock({ $0.requestEnded(at: now()) }) {
        case .now: trim()
        case .at(let due):
            let wait = due - now()
            Task {
                if wait > .zero { await sleep(wait) }
                schedule.withLock { $0.ran(at: now()) }
                trim()
            }
        case .nothing: break
        }
    }
}
