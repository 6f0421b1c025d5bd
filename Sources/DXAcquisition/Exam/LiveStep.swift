import DXDecomposition
import DXDevice
import DXProtocol
import Foundation
import Synchronization

/// The running step's shared state: lines, warnings and movements from the scan's callbacks
/// (the runner's and the pipeline's threads), and a watcher on the sequencer's clock for what
/// shows only as silence (a stall, a heartbeat gap). Writes the line count to the store as it
/// goes, so a crash leaves it there.
final class LiveStep: Sendable {
    struct State: Sendable {
        var lines = 0
        var storedLines = 0
        var lastLineAt: Duration?
        var stalled = false
        var heartbeatWarned = false
        var capture: String?
        var scanID: UInt32?
        var captureStored = false
        var timing: TimingMonitor
        var warnings: [ExamWarning] = []
        var motion: [MotionRecord] = []
        var stoppedForMotion = false
        var dose = ScanDose()
    }

    let examID: Int64, site: Site, row: Int64
    let periodUs: UInt32
    let linesPerFrame: Int
    let motionLimitMM: Double
    let recorder: any ExamRecorder
    let observer: ExamSequencer.Observer?
    let now: @Sendable () -> Date
    private let state: Mutex<State>
    private let elapsed = Mutex<Duration>(.zero)

    init(examID: Int64, site: Site, row: Int64, periodUs: UInt32, linesPerFrame: Int, motionLimitMM: Double,
         recorder: any ExamRecorder, observer: ExamSequencer.Observer?, now: @escaping @Sendable () -> Date) {
        self.examID = examID; self.site = site; self.row = row; self.periodUs = periodUs; self.motionLimitMM = motionLimitMM
        self.linesPerFrame = max(1, linesPerFrame)
        self.recorder = recorder; self.observer = observer; self.now = now
        state = Mutex(State(timing: TimingMonitor(periodUs: periodUs)))
    }

    func captured(path: String?, scanID: UInt32?) {
        state.withLock { $0.capture = path; $0.scanID = scanID }
        try? recorder.updateAttempt(row: row, lines: 0, capture: path, scanID: scanID)
    }

    /// Every scan of the step, as it ends: its dose (reported or estimated) adds up.
    func exposed(_ o: ScanOutcome) { state.withLock { $0.dose.add(o) } }

    func isMeasured(_ scanID: UInt32) -> Bool { state.withLock { $0.scanID == scanID } }

    func lines(_ lines: [ScanLine]) {
        let at = elapsed.withLock { $0 }
        let warnings = state.withLock { s in
            s.lines += lines.count
            s.lastLineAt = at
            s.stalled = false
            var out: [ExamWarning] = []
            for l in lines { out += s.timing.add(l) }
            s.warnings += out
            return out
        }
        for w in warnings { record(w) }
    }

    /// A movement from the stillness check; true when it is over the limit and the scan must stop.
    func motion(_ m: MotionEvent) -> Bool {
        let stop = abs(m.shiftMM) >= motionLimitMM
        let w = ExamWarning(kind: .motion, message: String(format: "the patient moved %+.1f mm at line %d%@", m.shiftMM, m.line,
                                                           stop ? ": scan stopped, reposition and rescan" : " (under the limit: flagged)"),
                            line: m.line, value: m.shiftMM)
        state.withLock { s in
            s.motion.append(MotionRecord(line: m.line, shiftMM: m.shiftMM, stopped: stop))
            s.warnings.append(w)
            if stop { s.stoppedForMotion = true }
        }
        record(w)
        return stop
    }

    func finishTiming() -> [ExamWarning] { state.withLock { $0.timing.finish() } }

    /// The store's writes while the scan runs, in order, on a queue of their own: a database
    /// another program holds locked makes a write wait (0.5 s) and must not hold a thread of
    /// the cooperative pool the heartbeat needs. `drain()` waits for them before the step's
    /// outcome is written, so none lands after it.
    private let writes = DispatchQueue(label: "dexa.exam.live-writes")
    /// The line count waiting to be written: one write in the queue at a time carries the
    /// latest, so a slow database (a lock's waits) never lets a backlog build up.
    private let pendingLines = Mutex<Int?>(nil)

    func drain() { writes.sync {} }

    func record(_ w: ExamWarning) {
        let (recorder, examID, row, at) = (self.recorder, self.examID, self.row, now())
        writes.async { try? recorder.addWarning(examID: examID, attemptRow: row, warning: w, at: at) }
        observer?(.warning(examID: examID, site: site, w))
    }

    func snapshot() -> (capture: String?, warnings: [ExamWarning], motion: [MotionRecord], stoppedForMotion: Bool, dose: ScanDose) {
        state.withLock { ($0.capture, $0.warnings, $0.motion, $0.stoppedForMotion, $0.dose) }
    }

    /// Every quarter period (at most 250 ms): a stall (no line for 3 periods once lines have
    /// begun, beyond the wait for a frame of several lines), a heartbeat gap (nothing sent to
    /// the device for over 600 ms: more than two heartbeats missed, 60 % of the watchdog), and
    /// the line count into the store.
    func watch(clock: any Clock<Duration>, session: DeviceSession) async {
        let period = Duration.microseconds(Int64(periodUs))
        let stallAfter = period * (3 + linesPerFrame - 1)
        let tick = min(period / 4, .milliseconds(250))
        let watch = Stopwatch(any: clock)
        while !Task.isCancelled {
            do { try await clock.sleep(for: tick) } catch { return }
            let t = watch.elapsed
            elapsed.withLock { $0 = t }
            let gap = await session.sinceLastSent
            let heartbeating = await session.heartbeatRunning
            var found: [ExamWarning] = []
            let (lines, store) = state.withLock { s -> (Int, Bool) in
                if let last = s.lastLineAt, !s.stalled, t - last > stallAfter {
                    s.stalled = true
                    found.append(ExamWarning(kind: .stall, message: String(format: "no line for %.1f s (3 periods are %.1f s) after line %d",
                                                                           (t - last).milliseconds / 1000, (period * 3).milliseconds / 1000, s.lines),
                                             line: s.lines, value: (t - last).milliseconds / 1000))
                }
                if heartbeating, gap > .milliseconds(600), !s.heartbeatWarned {
                    s.heartbeatWarned = true
                    found.append(ExamWarning(kind: .heartbeat, message: String(format: "nothing sent to the device for %.0f ms during the scan (watchdog 1000 ms)", gap.milliseconds),
                                             value: gap.milliseconds))
                }
                s.warnings += found
                let changed = s.lines != s.storedLines
                s.storedLines = s.lines
                return (s.lines, changed)
            }
            for w in found { record(w) }
            if store {
                let queued = pendingLines.withLock { p in
                    defer { p = lines }
                    return p != nil
                }
                if !queued {
                    writes.async { [self] in
                        guard let latest = pendingLines.withLock({ p in defer { p = nil }; return p }) else { return }
                        try? recorder.updateAttempt(row: row, lines: latest, capture: nil, scanID: nil)
                    }
                }
            }
        }
    }
}
