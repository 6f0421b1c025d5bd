import DXAnalysis
import DXClinical
import DXDecomposition
import DXProtocol
import Foundation

/// Many captures analysed again at once (`dexa reanalyze`, issue 18; here, not in the pure
/// DXAnalysis, because it reads files and runs tasks): when a reference table or
/// the calibration model changes, a department runs the analysis over its archive.
///
/// Each capture is measured against the calibration its unit was using when it was made: the
/// newest calibration capture of the same unit (model and serial) made at or before it whose
/// calibration the acceptance rule accepts, as the daemon keeps the calibration in use when a
/// new one is refused. `calibration` names one calibration capture for every file instead, as
/// `dexa analyze --calibration` does. Calibration captures are the references, not analysed.
/// Every failure is the file's own (an unreadable capture, no calibration, a refused one, a
/// damaged scan) and never ends the batch.
public enum Reanalysis {
    /// One capture to analyse and the calibration captures it may be measured against, the
    /// one to try first first.
    public struct Job: Sendable, Equatable {
        public var capture: String
        public var calibrations: [String]
    }

    /// What a set of files is: the captures to analyse, the calibration captures among them,
    /// the scouts (a dark scan and a few fast lines before an exam site or a QC pass, without
    /// an air scan: nothing to measure, passed over), and the files that are no capture at all
    /// (each a failure of its own).
    public struct Plan: Sendable, Equatable {
        public var jobs: [Job]
        public var calibrations: [String]
        public var scouts: [String]
        public var unreadable: [Outcome]
    }

    /// One capture's result: `report` (as `dexa analyze --json` gives it, a patient scan's with
    /// its site analysis) or `error`, one line.
    public struct Outcome: Sendable, Equatable, Encodable {
        public var capture: String
        public var calibration: String?
        /// Newer calibrations of its unit passed over, each with why (refused by the rule, or
        /// its capture could not be fitted): the one used is not the newest.
        public var passedOver: [String] = []
        public var ok: Bool
        public var error: String?
        public var patient: PatientScanReport?
        public var phantom: AnalysisReport?
        /// Its own time, from its start (the first capture of a calibration waits for its fit).
        public var seconds: Double

        public enum CodingKeys: String, CodingKey {
            case capture, calibration, ok, error, seconds, result
            case passedOver = "calibrations_passed_over"
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(capture, forKey: .capture)
            try c.encodeIfPresent(calibration, forKey: .calibration)
            if !passedOver.isEmpty { try c.encode(passedOver, forKey: .passedOver) }
            try c.encode(ok, forKey: .ok)
            try c.encodeIfPresent(error, forKey: .error)
            try c.encode((seconds * 1000).rounded() / 1000, forKey: .seconds)
            if let patient { try c.encode(patient, forKey: .result) } else if let phantom { try c.encode(phantom, forKey: .result) }
        }

        static func failed(_ capture: String, calibration: String? = nil, _ why: String, seconds: Double = 0) -> Outcome {
            Outcome(capture: capture, calibration: calibration, passedOver: [], ok: false, error: why, patient: nil, phantom: nil, seconds: seconds)
        }
    }

    /// The files to read: each path a capture, or a folder whose `.dxcap` files (not its
    /// subfolders) are taken, in name order. A path that is neither is a failure of its own.
    public static func files(_ paths: [String]) -> (files: [String], missing: [Outcome]) {
        var files: [String] = [], missing: [Outcome] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                missing.append(.failed(path, "no such file or folder"))
                continue
            }
            guard isDirectory.boolValue else { files.append(path); continue }
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else {
                missing.append(.failed(path, "cannot read the folder"))
                continue
            }
            let base = path.hasSuffix("/") ? String(path.dropLast()) : path
            files += names.filter { $0.hasSuffix(".dxcap") }.sorted().map { base + "/" + $0 }
        }
        return (files, missing)
    }

    /// When a capture was made, for ordering: its header's time, then its highest scan id
    /// (the daemon numbers scans in order; two captures of the same second are told apart so).
    struct Made: Comparable {
        var date: Date
        var scan: UInt32
        static func < (a: Made, b: Made) -> Bool { (a.date, a.scan) < (b.date, b.scan) }
    }

    static func made(_ h: CaptureHeader, _ formatter: ISO8601DateFormatter) -> Made? {
        guard let date = formatter.date(from: h.created) else { return nil }
        return Made(date: date, scan: h.scans.map(\.scanID).max() ?? 0)
    }

    static func isCalibration(_ h: CaptureHeader) -> Bool { h.scans.contains { $0.role == .calibration } }

    /// A scout's capture: a dark scan and the scout's lines, no air scan (`ExamSequencer`,
    /// `QCRun.scoutPlans`). Every capture made to be measured has its air scan.
    static func isScout(_ h: CaptureHeader) -> Bool {
        !isCalibration(h) && !h.scans.contains { $0.role == .air } && h.scans.contains { $0.role == .dark }
    }

    /// Pairs each capture with its calibration candidates (see the type's documentation).
    /// `headers`: each file's header, or why it could not be read.
    public static func plan(_ headers: [(path: String, header: Result<CaptureHeader, AnalysisError>)], calibration: String?) -> Plan {
        var readable: [(path: String, header: CaptureHeader)] = []
        var unreadable: [Outcome] = []
        for (path, result) in headers {
            switch result {
            case .success(let h): readable.append((path, h))
            case .failure(let why): unreadable.append(.failed(path, why.description))
            }
        }
        let formatter = ISO8601DateFormatter()
        // Each calibration's time read once, newest first (equal times by name, for a stable
        // order).
        let calibrations = readable.filter { isCalibration($0.header) }
            .map { (path: $0.path, device: $0.header.device, made: made($0.header, formatter)) }
            .sorted { a, b in
                guard let x = a.made, let y = b.made else { return a.made != nil }
                return x == y ? a.path > b.path : x > y
            }
        var jobs: [Job] = [], scouts: [String] = []
        for (path, h) in readable where !isCalibration(h) {
            if isScout(h) { scouts.append(path); continue }
            if let calibration {
                jobs.append(Job(capture: path, calibrations: [calibration]))
                continue
            }
            let when = made(h, formatter)
            let candidates = calibrations.filter { c in
                c.device.model == h.device.model && c.device.serial == h.device.serial
                    && (when.flatMap { w in c.made.map { $0 <= w } } ?? false)
            }
            jobs.append(Job(capture: path, calibrations: candidates.map(\.path)))
        }
        return Plan(jobs: jobs, calibrations: readable.filter { isCalibration($0.header) }.map(\.path), scouts: scouts, unreadable: unreadable)
    }

    /// Each calibration capture fitted once, however many captures use it and however many
    /// jobs ask for it at the same time.
    actor Calibrations {
        private var fits: [String: Task<Result<Calibration, AnalysisError>, Never>] = [:]

        /// `known`: calibrations already fitted (a calibration named for all, judged before).
        init(known: [String: Calibration]) {
            for (path, c) in known { fits[path] = Task { .success(c) } }
        }

        func calibration(_ path: String) async -> Result<Calibration, AnalysisError> {
            if let t = fits[path] { return await t.value }
            let t = Task.detached { () -> Result<Calibration, AnalysisError> in
                do throws(AnalysisError) {
                    return .success(try CaptureAnalysis.fit(try CaptureReader.read(path: path), path: path))
                } catch {
                    return .failure(error)
                }
            }
            fits[path] = t
            return await t.value
        }
    }

    /// Runs the plan's jobs, at most `jobs` at a time, and hands each outcome to `each` as it
    /// completes (in completion order; the unreadable files first). `force` analyses with a
    /// calibration the rule refuses or from another unit, as `dexa analyze --force`. `fitted`:
    /// calibration captures already fitted, by path.
    public static func run(_ plan: Plan, jobs: Int, force: Bool = false, reference: ReferenceSet = .nhanes, fitted: [String: Calibration] = [:],
                           each: @escaping @Sendable (Outcome) async -> Void) async {
        for u in plan.unreadable { await each(u) }
        let calibrations = Calibrations(known: fitted)
        let width = max(1, jobs)
        await withTaskGroup(of: Outcome.self) { group in
            var next = plan.jobs.makeIterator()
            func start() -> Bool {
                guard let job = next.next() else { return false }
                group.addTask { await analyse(job, calibrations: calibrations, force: force, reference: reference) }
                return true
            }
            for _ in 0..<width {
                if !start() { break }
            }
            while let outcome = await group.next() {
                await each(outcome)
                _ = start()
            }
        }
    }

    static func analyse(_ job: Job, calibrations: Calibrations, force: Bool, reference: ReferenceSet) async -> Outcome {
        let clock = ContinuousClock(), start = clock.now
        func elapsed() -> Double { let d = clock.now - start; return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
        guard !job.calibrations.isEmpty else {
            return .failed(job.capture, "no calibration capture of its unit made at or before it among the files given (or name one with --calibration)")
        }
        // The newest the rule accepts, the calibration the unit was using (the daemon keeps the
        // one in use when a new one is refused). With --force, the newest refused one only
        // when none is accepted: forcing one capture through must not move every other one
        // onto a calibration its unit never used.
        var chosen: (path: String, calibration: Calibration)?
        var firstRefused: (path: String, calibration: Calibration)?
        var passedOver: [String] = []
        for path in job.calibrations {
            switch await calibrations.calibration(path) {
            case .success(let c) where c.verdict.accepted:
                chosen = (path, c)
            case .success(let c):
                if firstRefused == nil { firstRefused = (path, c) }
                passedOver.append("\(path): \(c.verdict.description)")
            case .failure(let why):
                passedOver.append(why.description)
            }
            if chosen != nil { break }
        }
        if chosen == nil, force, let firstRefused {
            chosen = firstRefused
            passedOver.removeAll { $0.hasPrefix(firstRefused.path + ":") }
        }
        guard let chosen else {
            return .failed(job.capture, passedOver.count == 1 ? passedOver[0]
                           : "none of its unit's \(passedOver.count) calibrations made at or before it is usable; the newest: \(passedOver.first ?? "")",
                           seconds: elapsed())
        }
        do {
            let result = try CaptureAnalysis.run(calibration: chosen.calibration, calibrationPath: chosen.path, source: .file(try CaptureFile(path: job.capture)),
                                                 scanPath: job.capture, force: force)
            if result.role == .patient, let scan = result.decomposed {
                let patient = PatientContext(capture: result.header)
                let site = SiteAnalysis.analyze(scan, patient: patient, reference: reference)
                let report = PatientScanReport(AnalysisReport(result), region: scan.provenance.region, site: site, patient: patient)
                return Outcome(capture: job.capture, calibration: chosen.path, passedOver: passedOver, ok: true, error: nil, patient: report, phantom: nil,
                               seconds: elapsed())
            }
            return Outcome(capture: job.capture, calibration: chosen.path, passedOver: passedOver, ok: true, error: nil, patient: nil,
                           phantom: AnalysisReport(result), seconds: elapsed())
        } catch {
            var failed = Outcome.failed(job.capture, calibration: chosen.path, error.description, seconds: elapsed())
            failed.passedOver = passedOver
            return failed
        }
    }
}
