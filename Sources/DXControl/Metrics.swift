import DXAcquisition
import DXDevice

/// The daemon's counters for `dexa service metrics` (JSON); the same figures go to
/// swift-metrics and out in Prometheus text (DXDaemon's `DaemonTelemetry`).
public struct DaemonMetrics: Sendable, Codable, Equatable {
    public var link = LinkCounters()
    public var reconnects = 0
    public var scansCompleted = 0
    public var scansAborted = 0
    public var scansInterrupted = 0
    public var linesReceived = 0
    public var linesMissing = 0
    public var exposureMs: UInt64 = 0
    public var dapMGyCm2 = 0.0
    /// Of the above, what the host estimated for scans the device reported no dose for.
    public var estimatedExposureMs: UInt64 = 0
    public var estimatedDAPMGyCm2 = 0.0
    /// The longest gap between host frames during any scan (ICD §4: 250 ms at most).
    public var longestScanHostGapMs = 0.0
    public var uptimeSeconds = 0.0
    /// The DICOM queue (read from the exam store, which dexa-dicomd fills and empties): what
    /// waits, what failed, and whether it is stuck (`dicom_queue_alert_s`). nil when the
    /// store could not be read.
    public var dicomQueue: DicomQueueMetrics?
    /// The daemon's memory when the figures were taken (nil where it cannot be read).
    public var memory: MemoryMetrics?

    public enum CodingKeys: String, CodingKey {
        case link, reconnects, dicomQueue = "dicom_queue", memory
        case scansCompleted = "scans_completed", scansAborted = "scans_aborted", scansInterrupted = "scans_interrupted"
        case linesReceived = "lines_received", linesMissing = "lines_missing", exposureMs = "exposure_ms", dapMGyCm2 = "dap_mgy_cm2"
        case estimatedExposureMs = "estimated_exposure_ms", estimatedDAPMGyCm2 = "estimated_dap_mgy_cm2"
        case longestScanHostGapMs = "longest_scan_host_gap_ms", uptimeSeconds = "uptime_s"
    }

    public init() {}

    /// Counts one scan's outcome (the scan runner reports every scan it made).
    public mutating func count(_ o: ScanOutcome) {
        switch o.result {
        case .completed: scansCompleted += 1
        case .aborted: scansAborted += 1
        case .interrupted: scansInterrupted += 1
        }
        linesReceived += o.lines
        linesMissing += o.missingLines
        exposureMs += UInt64(o.exposureMs)
        dapMGyCm2 += o.dapMGyCm2
        if o.doseEstimated {
            estimatedExposureMs += UInt64(o.exposureMs)
            estimatedDAPMGyCm2 += o.dapMGyCm2
        }
        longestScanHostGapMs = max(longestScanHostGapMs, o.longestHostGapMs)
    }
}

/// The daemon's memory: what the kernel holds resident for it and what its heap has handed
/// out. A leak grows `heapInUseBytes`; fragmentation grows resident memory with the heap's
/// free bytes and not what is in use (docs/RELIABILITY.md, "A clinic day").
public struct MemoryMetrics: Sendable, Codable, Equatable {
    public var residentBytes: Int
    /// What glibc's heap has handed out (mallinfo2: blocks in use and mapped blocks) and what
    /// it holds free. Blocks a thread keeps in its own cache (tcache) count as in use.
    public var heapInUseBytes: Int
    public var heapFreeBytes: Int
    /// All SQLite has allocated (sqlite3_memory_used: page caches, schemas, prepared
    /// statements), and of it the page caches (SQLITE_STATUS_PAGECACHE_OVERFLOW), which fill
    /// during a day and are then recycled under the soft heap limit (`sqliteLimitBytes`; soft:
    /// SQLite may pass it for a moment rather than fail).
    public var sqliteBytes: Int
    public var sqlitePageCacheBytes: Int
    public var sqliteLimitBytes: Int
    /// The log ring's share of the heap (its slots and lines, estimated) and the most it can
    /// hold.
    public var logRingBytes: Int
    public var logRingLimitBytes: Int
    /// Resident anonymous memory (the heap's touched pages, stacks): `RssAnon`. The rest of
    /// resident memory is pages of the program's files, paged in as code is first run.
    public var anonymousBytes: Int

    public init(residentBytes: Int, anonymousBytes: Int, heapInUseBytes: Int, heapFreeBytes: Int, sqliteBytes: Int, sqlitePageCacheBytes: Int,
                logRingBytes: Int, sqliteLimitBytes: Int, logRingLimitBytes: Int) {
        self.sqliteLimitBytes = sqliteLimitBytes
        self.logRingLimitBytes = logRingLimitBytes
        self.residentBytes = residentBytes
        self.anonymousBytes = anonymousBytes
        self.heapInUseBytes = heapInUseBytes
        self.heapFreeBytes = heapFreeBytes
        self.sqliteBytes = sqliteBytes
        self.sqlitePageCacheBytes = sqlitePageCacheBytes
        self.logRingBytes = logRingBytes
    }

    /// What the heap holds besides its two caches (SQLite's page caches, the log ring): a leak
    /// grows this, SQLite's own (a statement never finalised) included.
    public var workingHeapBytes: Int { heapInUseBytes - sqlitePageCacheBytes - logRingBytes }
    /// Anonymous resident memory less every free byte of the heap and the two caches: what is
    /// anonymous and in use besides the caches (the heap's other blocks, stacks, other
    /// mappings), or less (free bytes need not be resident): a lower bound that grows with a
    /// leak outside malloc.
    public var anonymousBesideCachesBytes: Int { anonymousBytes - heapFreeBytes - sqlitePageCacheBytes - logRingBytes }

    public enum CodingKeys: String, CodingKey {
        case residentBytes = "resident_bytes", anonymousBytes = "anonymous_bytes", heapInUseBytes = "heap_in_use_bytes", heapFreeBytes = "heap_free_bytes"
        case sqliteBytes = "sqlite_bytes", sqlitePageCacheBytes = "sqlite_page_cache_bytes", logRingBytes = "log_ring_bytes"
        case sqliteLimitBytes = "sqlite_limit_bytes", logRingLimitBytes = "log_ring_limit_bytes"
    }
}

/// The DICOM queue in figures, for `service.metrics` and Prometheus: a monitor alerts on
/// `dexa_dicom_queue_stuck`.
public struct DicomQueueMetrics: Sendable, Codable, Equatable {
    public var pending: Int
    public var failed: Int
    /// Procedure steps (MPPS) not yet ended at the RIS.
    public var stepsOpen: Int
    public var oldestPendingSeconds: Double
    public var alertAfterSeconds: Double
    public var stuck: Bool

    public enum CodingKeys: String, CodingKey {
        case pending, failed, stuck
        case stepsOpen = "steps_open", oldestPendingSeconds = "oldest_pending_s", alertAfterSeconds = "alert_after_s"
    }

    public init(_ q: DicomQueueStatus) {
        pending = q.pending + q.unbuilt.filter { $0.error == nil }.count
        failed = q.failed
        stepsOpen = q.steps.filter { $0.state == .create || $0.state == .inProgress }.count
        oldestPendingSeconds = q.oldestPendingSeconds ?? 0
        alertAfterSeconds = q.alertAfterSeconds
        stuck = q.stuck
    }
}
