import DXAcquisition
import DXControl
import DXDevice
import CoreMetrics
import Prometheus
import Synchronization

/// The daemon's counters, counted once where every scan passes (the scan runner's outcome
/// callback) and at every reconnection: a snapshot for `service.metrics` as JSON
/// (`DaemonMetrics`), and the same figures as swift-metrics instruments on this daemon's own
/// Prometheus registry (swift-prometheus), exported as Prometheus text for `--prometheus`
/// and the service report. Metric names are listed in docs/console.md.
final class DaemonTelemetry: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let snapshot = Mutex(DaemonMetrics())

    private let scansCompleted, scansAborted, scansInterrupted: CoreMetrics.Counter
    private let lines, linesMissing, reconnects: CoreMetrics.Counter
    private let exposureSeconds, dapMGyCm2, estimatedExposureSeconds, estimatedDAPMGyCm2: CoreMetrics.FloatingPointCounter
    private let longestHostGapSeconds, uptimeSeconds: CoreMetrics.Gauge
    private let dicomPending, dicomFailed, dicomStepsOpen, dicomOldestSeconds, dicomStuck: CoreMetrics.Gauge
    private let residentBytes, anonymousBytes, heapInUseBytes, heapFreeBytes, sqliteBytes, sqlitePageCacheBytes, logRingBytes: CoreMetrics.Gauge
    private let dicom = Mutex<DicomQueueMetrics?>(nil)

    /// The device session's link counters are cumulative on the session; each export adds
    /// what they grew by since the last (a counter that went back, a new session, adds all).
    private struct LinkCounter: Sendable {
        let counter: CoreMetrics.Counter
        let read: @Sendable (LinkCounters) -> Int
    }
    private let link: [LinkCounter]
    private let lastLink = Mutex(LinkCounters())

    init() {
        let factory = PrometheusMetricsFactory(registry: registry)
        func counter(_ name: String, _ labels: [(String, String)] = []) -> CoreMetrics.Counter { CoreMetrics.Counter(label: "dexa_" + name, dimensions: labels, factory: factory) }
        func amount(_ name: String) -> CoreMetrics.FloatingPointCounter { CoreMetrics.FloatingPointCounter(label: "dexa_" + name, dimensions: [], factory: factory) }
        func gauge(_ name: String) -> CoreMetrics.Gauge { CoreMetrics.Gauge(label: "dexa_" + name, dimensions: [], factory: factory) }
        scansCompleted = counter("scans_total", [("result", "completed")])
        scansAborted = counter("scans_total", [("result", "aborted")])
        scansInterrupted = counter("scans_total", [("result", "interrupted")])
        lines = counter("lines_total")
        linesMissing = counter("lines_missing_total")
        reconnects = counter("reconnects_total")
        exposureSeconds = amount("exposure_seconds_total")
        dapMGyCm2 = amount("dap_mgy_cm2_total")
        estimatedExposureSeconds = amount("estimated_exposure_seconds_total")
        estimatedDAPMGyCm2 = amount("estimated_dap_mgy_cm2_total")
        longestHostGapSeconds = gauge("scan_host_gap_max_seconds")
        uptimeSeconds = gauge("uptime_seconds")
        dicomPending = gauge("dicom_queue_pending")
        dicomFailed = gauge("dicom_queue_failed")
        dicomStepsOpen = gauge("dicom_steps_open")
        dicomOldestSeconds = gauge("dicom_queue_oldest_pending_seconds")
        dicomStuck = gauge("dicom_queue_stuck")
        residentBytes = gauge("memory_resident_bytes")
        anonymousBytes = gauge("memory_anonymous_bytes")
        logRingBytes = gauge("memory_log_ring_bytes")
        heapInUseBytes = gauge("memory_heap_in_use_bytes")
        heapFreeBytes = gauge("memory_heap_free_bytes")
        sqliteBytes = gauge("memory_sqlite_bytes")
        sqlitePageCacheBytes = gauge("memory_sqlite_page_cache_bytes")
        link = [
            LinkCounter(counter: counter("frames_total", [("kind", "response")]), read: { $0.responses }),
            LinkCounter(counter: counter("frames_total", [("kind", "event")]), read: { $0.events }),
            LinkCounter(counter: counter("frames_total", [("kind", "data")]), read: { $0.dataFrames }),
            LinkCounter(counter: counter("crc_errors_total", [("endpoint", "0x81")]), read: { $0.responseErrors.crcErrors }),
            LinkCounter(counter: counter("crc_errors_total", [("endpoint", "0x82")]), read: { $0.dataErrors.crcErrors }),
            LinkCounter(counter: counter("resyncs_total", [("endpoint", "0x81")]), read: { $0.responseErrors.resyncs }),
            LinkCounter(counter: counter("resyncs_total", [("endpoint", "0x82")]), read: { $0.dataErrors.resyncs }),
            LinkCounter(counter: counter("data_gaps_total"), read: { $0.dataGaps }),
            LinkCounter(counter: counter("data_frames_missing_total"), read: { Int(clamping: $0.missingDataFrames) }),
            LinkCounter(counter: counter("lines_dropped_total", [("stage", "scan_feed")]), read: { $0.linesDropped }),
            LinkCounter(counter: counter("commands_total"), read: { $0.commandsSent }),
            LinkCounter(counter: counter("command_timeouts_total"), read: { $0.timeouts }),
            LinkCounter(counter: counter("heartbeats_total"), read: { $0.heartbeatsSent }),
        ]
    }

    /// One scan's outcome, whatever started it (scan.run, a calibration, an exam's scans).
    func count(_ o: ScanOutcome) {
        let longest = snapshot.withLock { m in
            m.count(o)
            return m.longestScanHostGapMs
        }
        switch o.result {
        case .completed: scansCompleted.increment()
        case .aborted: scansAborted.increment()
        case .interrupted: scansInterrupted.increment()
        }
        lines.increment(by: o.lines)
        linesMissing.increment(by: o.missingLines)
        exposureSeconds.increment(by: Double(o.exposureMs) / 1000)
        dapMGyCm2.increment(by: o.dapMGyCm2)
        if o.doseEstimated {
            estimatedExposureSeconds.increment(by: Double(o.exposureMs) / 1000)
            estimatedDAPMGyCm2.increment(by: o.dapMGyCm2)
        }
        longestHostGapSeconds.record(longest / 1000)
    }

    func reconnected() {
        snapshot.withLock { $0.reconnects += 1 }
        reconnects.increment()
    }

    /// The DICOM queue as it was just read (nil: unreadable, and said so by its absence).
    func dicomQueue(_ q: DicomQueueMetrics?) {
        dicom.withLock { $0 = q }
        guard let q else { return }
        dicomPending.record(q.pending)
        dicomFailed.record(q.failed)
        dicomStepsOpen.record(q.stepsOpen)
        dicomOldestSeconds.record(q.oldestPendingSeconds)
        dicomStuck.record(q.stuck ? 1 : 0)
    }

    /// The counters now, with the link's and the uptime.
    func metrics(link counters: LinkCounters, uptimeSeconds up: Double) -> DaemonMetrics {
        var m = snapshot.withLock { $0 }
        m.link = counters
        m.uptimeSeconds = up
        m.dicomQueue = dicom.withLock { $0 }
        m.memory = Heap.account()
        return m
    }

    /// The same in Prometheus text exposition format.
    func prometheus(link counters: LinkCounters, uptimeSeconds up: Double) -> String {
        // Under the lock: two exports at once add each growth once.
        lastLink.withLock { last in
            for c in link {
                let now = c.read(counters), before = c.read(last)
                let grew = now >= before ? now - before : now
                if grew > 0 { c.counter.increment(by: grew) }
            }
            last = counters
        }
        uptimeSeconds.record(up)
        if let m = Heap.account() {
            residentBytes.record(m.residentBytes)
            anonymousBytes.record(m.anonymousBytes)
            logRingBytes.record(m.logRingBytes)
            heapInUseBytes.record(m.heapInUseBytes)
            heapFreeBytes.record(m.heapFreeBytes)
            sqliteBytes.record(m.sqliteBytes)
            sqlitePageCacheBytes.record(m.sqlitePageCacheBytes)
        }
        return registry.emitToString()
    }
}
