import DXControl
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// A clinic day through the real processes (issue 14; docs/RELIABILITY.md, "A clinic day"):
/// the morning's QC, patient exams one after another, each a different simulated patient run
/// the way a technologist runs it (`dexa exam new`, the checklist, `dexa exam run --auto`, the
/// report as a PDF), a service session half-way (self-test, sensors, log, metrics, a service
/// report, dark and air scans, a calibration, a reset of the unit, QC after the calibration),
/// then the rest of the exams. dexad's memory (its own account: heap, caches, anonymous and
/// resident memory), open files and threads are sampled after each exam; after the warm-up
/// the heap and open files stay within 10 % (with the margins below). At the end nothing runs: X-rays
/// off, no scan, no exam in progress, no child process, every exam complete in the store.
///
/// `DEXA_CLINIC_EXAMS` (default 6, the documented run 30), `DEXA_CLINIC_WARMUP` (exams before
/// the reference sample, default 3), `DEXA_CLINIC_REPORT` (a file for the samples' table).
@Suite("A clinic day", .serialized)
struct ClinicDayTests {
    static let environment = ProcessInfo.processInfo.environment
    static let exams = max(2, Int(environment["DEXA_CLINIC_EXAMS"] ?? "") ?? 6)
    static let warmUp = min(exams - 1, max(1, Int(environment["DEXA_CLINIC_WARMUP"] ?? "") ?? 3))
    static let speed = 50.0

    struct Sample {
        let label: String
        let daemon: ProcessResources
        let simulator: ProcessResources?
        let wallSeconds: Double
        /// dexad's own account (service.metrics): its heap in use, SQLite's share of it.
        let memory: MemoryMetrics?
    }

    @Test func aDayOfExamsQCAndService() async throws {
        let dir = TemporaryDirectory()
        let (calPhantom, espPhantom) = try AnalyzeTests.writePhantoms(dir)
        try CalibrationFixture.install(stateDirectory: dir.file("state"))
        let sim = try await SimulatorProcess(in: dir, speed: Self.speed, extra: ["--phantom", "esp"])
        // No per-thread caches of freed blocks (tcache): mallinfo2 counts a block a thread
        // keeps for its next allocation as in use, up to some 200 kB a thread, and threads
        // come and go; without them the heap in use is what is live.
        let daemon = try await DaemonProcess(in: dir, device: "sim:\(sim.devicePath)", timeScale: Self.speed,
                                             config: ["qc_baseline_scans = 10"], environment: ["GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"])
        try await daemon.waitForDevice()
        let clock = ContinuousClock(), start = clock.now
        var samples: [Sample] = []
        var files = ProcessResources.openFiles(of: daemon.child.pid)
        func sample(_ label: String) async throws {
            let memory = try await daemon.call(.serviceMetrics, MetricsParams()).metrics.memory
            let d = try #require(ProcessResources.of(pid: daemon.child.pid), "dexad is gone at \(label)")
            // What was opened or closed since the last sample, for the log.
            let now = ProcessResources.openFiles(of: daemon.child.pid)
            let opened = now.filter { files[$0.key] != $0.value }.sorted { $0.key < $1.key }
            let closed = files.filter { now[$0.key] != $0.value }.sorted { $0.key < $1.key }
            if !opened.isEmpty || !closed.isEmpty { print("dexad's files at \(label): opened \(opened.map { "\($0.key) \($0.value)" }), closed \(closed.map { "\($0.key) \($0.value)" })") }
            files = now
            let elapsed = clock.now - start
            samples.append(Sample(label: label, daemon: d, simulator: ProcessResources.of(pid: sim.child.pid),
                                  wallSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18,
                                  memory: memory))
        }
        func cli(_ arguments: [String], _ what: String) async throws -> String {
            let r = try await daemon.cli(arguments)
            #expect(r.status == 0, "\(what): exit \(r.status): \(r.err) \(r.out.suffix(2000))")
            return r.out
        }
        func onTheTable(_ scene: String) async throws {
            let reply = try await sim.control("phantom \(scene)")
            #expect(reply == "ok", "phantom \(scene): \(reply)")
        }
        try await sample("start")

        // Morning: the QC phantom on the table, the daily QC scan.
        _ = try await cli(["qc", "run", "--phantom", espPhantom], "morning QC")
        try await sample("QC")

        var examIDs: [Int] = []
        let half = Self.exams / 2
        for i in 1...Self.exams {
            if i == half + 1 {
                try await serviceSession(calPhantom: calPhantom, espPhantom: espPhantom, cli: cli, onTheTable: onTheTable, sample: sample)
            }
            // The next patient lies down: a different body each time (PatientVariety).
            let seed = UInt64(7000 + i)
            let spec = PatientVariety.patient(seed: seed)
            let file = dir.file("patient-\(i).json")
            let body = try JSONSerialization.data(withJSONObject: ["patient": try JSONSerialization.jsonObject(with: JSONEncoder().encode(spec))])
            try body.write(to: URL(fileURLWithPath: file))
            try await onTheTable(file)
            let female = i % 3 != 0
            let created = try await cli(["exam", "new", "--patient-id", String(format: "CD-%03d", i), "--name", "Patient \(i)",
                                         "--sex", female ? "female" : "male", "--birth-date", "\(1940 + (i * 7) % 35)-0\(1 + i % 9)-1\(i % 10)",
                                         "--referral", "clinic day \(i)", "--json"], "exam new \(i)")
            let exam = try #require(try JSONDecoder().decode(JSONValue.self, from: Data(created.utf8))["id"]?.intValue, "\(created)")
            examIDs.append(exam)
            _ = try await cli(["exam", "checklist", String(exam), "--pregnancy", "no", "--contrast", "none", "--nuclear", "none",
                               "--no-fracture", "--no-metal", "--jewellery-removed", "--height", "\(150 + i % 30)", "--weight", "\(55 + (i * 3) % 35)",
                               "--measured-today", "--identity-confirmed", "--referral-confirmed"], "checklist \(i)")
            _ = try await cli(["exam", "run", String(exam), "--auto"], "exam \(i) (patient seed \(seed))")
            let pdf = dir.file("report-\(exam).pdf")
            _ = try await cli(["exam", "report", String(exam), "--pdf", pdf], "report \(i)")
            #expect(((try? FileManager.default.attributesOfItem(atPath: pdf)[.size] as? Int) ?? 0) > 10_000, "report \(i) is not a PDF")
            try await sample("exam \(i)")
        }

        // The day is over: nothing runs.
        let status = try await daemon.call("device.status")
        #expect(status["xray_on"] == .bool(false) && status["state"]?.stringValue == "IDLE", "\(status)")
        let simStatus = try await sim.status()
        #expect(simStatus["xrayOn"] == .bool(false), "\(simStatus["xrayOn"] ?? .null)")
        // The unit's own record since its reset at the service session: exposures, and no
        // watchdog expiry (the host never fell silent during one). The longest gap between host
        // frames is printed, not held to 1000 ms: at 50x a 20 ms hiccup of a busy machine is
        // 1000 ms of device time, which the test floor of the watchdog forgives (docs/simulator.md).
        guard case .array(let exposures)? = simStatus["exposures"], case .array(let expiries)? = simStatus["watchdogExpiries"] else {
            Issue.record("the simulator's status has no exposures or watchdog expiries: \(simStatus)")
            return
        }
        #expect(!exposures.isEmpty && expiries.isEmpty, "\(exposures.count) exposures, watchdog expiries \(expiries)")
        let longestGap = exposures.compactMap { $0["longestHostGapMs"]?.numberValue }.max() ?? .infinity
        print("the unit's record: \(exposures.count) exposures since the reset, longest host gap \(longestGap) ms (device clock), \(simStatus["watchdogForgiven"] ?? .null) gaps forgiven at test speed")
        #expect(ProcessResources.children(of: daemon.child.pid).isEmpty, "dexad has children at the end of the day")
        let listed = try await daemon.call("exam.list", .object(["limit": .number(500)]))
        guard case .array(let all)? = listed["exams"] else { Issue.record("no exam list: \(listed)"); return }
        #expect(all.count == Self.exams)
        #expect(all.allSatisfy { $0["state"]?.stringValue == "completed" }, "\(all.map { $0["state"] ?? .null })")
        // Every exam complete in the store: four sites, every line, the capture and the
        // decomposed scan on disk, the results there.
        for id in examIDs {
            let shown = try await daemon.call("exam.get", .object(["exam_id": .number(Double(id))]))
            #expect(shown["state"]?.stringValue == "completed", "exam \(id): \(shown["state"] ?? .null)")
            guard case .array(let attempts)? = shown["attempts"] else { Issue.record("exam \(id): no attempts"); continue }
            #expect(attempts.map { $0["site"]?.stringValue ?? "" } == ["ap_spine", "left_hip", "right_hip", "lateral_spine"], "exam \(id)")
            for a in attempts {
                #expect(a["status"]?.stringValue == "completed" && a["lines"]?.intValue == a["planned_lines"]?.intValue, "exam \(id): \(a)")
                for key in ["capture", "decomposed"] {
                    #expect(FileManager.default.fileExists(atPath: a[key]?.stringValue ?? "/nonexistent"), "exam \(id) \(key): \(a[key] ?? .null)")
                }
            }
            let results = try await daemon.call("exam.results", .object(["exam_id": .number(Double(id))]))
            #expect(results["diagnosis"] != nil, "exam \(id): \(results)")
        }
        let metrics = try await daemon.call(.serviceMetrics, MetricsParams()).metrics
        #expect(metrics.scansAborted == 0 && metrics.scansInterrupted == 0 && metrics.linesMissing == 0,
                "aborted \(metrics.scansAborted), interrupted \(metrics.scansInterrupted), lines missing \(metrics.linesMissing)")
        try await sample("end")

        // Flat after the warm-up (docs/RELIABILITY.md, "A clinic day"). Memory is judged by
        // dexad's own account of its heap, against the most the warm-up held:
        // - what the heap holds besides its two caches (SQLite's page caches and the log ring,
        //   which fill over the first hours and then hold their size), within 10 % and 512 kB:
        //   a leak grows it (a decomposed scan kept per exam would add megabytes each time);
        //   the 512 kB are what code run for the first time after the warm-up allocates once
        //   (the service session's; heaptrack found at most 0.46 MB outside SQLite allocated
        //   after the first exam and held at the end of a 24-exam day, none of it growing);
        // - anonymous resident memory less the heap's free bytes and the two caches, within
        //   10 % and 512 kB: a lower bound on what is anonymous and in use besides the caches
        //   (free bytes need not be resident) that a leak outside malloc grows too. Anonymous
        //   memory alone swings by megabytes with the free pages glibc keeps (6.3 MB after the
        //   warm-up, 9.0 at the end of one CI day, with 7.1 MB free in the heap), and grows
        //   with SQLite's page caches (0.4 to 3.1 MB over a 40-exam day).
        // The caches themselves, and total resident memory (most of it pages of the program's
        // files, paged in as code first runs), are printed in the table, not held.
        let reference = try #require(samples.first { $0.label == "exam \(Self.warmUp)" })
        let warmUpSamples = samples.prefix { $0.label != "exam \(Self.warmUp)" } + [reference]
        let later = samples.drop { $0.label != "exam \(Self.warmUp)" }.dropFirst()
        let warmUpMemory = warmUpSamples.compactMap(\.memory)
        let workingLimit = Double(warmUpMemory.map(\.workingHeapBytes).max() ?? 0) * 1.10 + 512 * 1024
        let besideCachesLimit = Double(warmUpMemory.map(\.anonymousBesideCachesBytes).max() ?? 0) * 1.10 + 512 * 1024
        let fdLimit = Int((Double(reference.daemon.fileDescriptors) * 1.10).rounded(.up))
        // Threads: a dispatch worker more or less is the pool at work, not a leak; two over.
        let threadLimit = max(Int((Double(reference.daemon.threads) * 1.10).rounded(.up)), reference.daemon.threads + 2)
        #expect(warmUpMemory.count == warmUpSamples.count, "service.metrics has no memory account")
        for s in later {
            let m = try #require(s.memory, "no memory account at \(s.label)")
            #expect(Double(m.workingHeapBytes) <= workingLimit, "dexad's heap at \(s.label): \(m), limit \(Int(workingLimit)) bytes")
            #expect(Double(m.anonymousBesideCachesBytes) <= besideCachesLimit, "dexad at \(s.label): \(m), limit \(Int(besideCachesLimit)) bytes")
            #expect(s.daemon.fileDescriptors <= fdLimit, "dexad at \(s.label): \(s.daemon), after the warm-up \(reference.daemon)")
            #expect(s.daemon.threads <= threadLimit, "dexad at \(s.label): \(s.daemon), after the warm-up \(reference.daemon)")
        }
        let table = Self.table(samples, exams: Self.exams, warmUp: Self.warmUp)
        print(table)
        if let path = Self.environment["DEXA_CLINIC_REPORT"] { try Data(table.utf8).write(to: URL(fileURLWithPath: path)) }
    }

    /// Half-way through the day the service engineer visits: everything a service session
    /// does, through the CLI as the engineer types it.
    func serviceSession(calPhantom: String, espPhantom: String, cli: ([String], String) async throws -> String,
                        onTheTable: (String) async throws -> Void, sample: (String) async throws -> Void) async throws {
        let dir = TemporaryDirectory("dxs")
        for command in [["service", "selftest", "--json"], ["service", "sensors", "--json"], ["service", "log"], ["service", "metrics", "--json"]] {
            _ = try await cli(command, command.joined(separator: " "))
        }
        try await sample("service: self-test, sensors, log, metrics")
        let tarball = dir.file("service.tar.gz")
        _ = try await cli(["service", "report", "--captures", "5", "--output", tarball], "service report")
        #expect(((try? FileManager.default.attributesOfItem(atPath: tarball)[.size] as? Int) ?? 0) > 1_000)
        try await sample("service: report")
        try await onTheTable("empty")
        _ = try await cli(["scan", "--mode", "dark", "--lines", "50", "--role", "dark"], "dark scan")
        _ = try await cli(["scan", "--lines", "100", "--role", "air"], "air scan")
        try await sample("service: dark and air scans")
        try await onTheTable("calibration")
        _ = try await cli(["service", "calibrate", "--phantom", calPhantom], "calibration")
        try await sample("service: calibration")
        _ = try await cli(["service", "reset"], "reset")
        try await sample("service: reset")
        try await onTheTable("esp")
        _ = try await cli(["qc", "run", "--phantom", espPhantom], "QC after the calibration")
        try await sample("service: QC")
    }

    static func table(_ samples: [Sample], exams: Int, warmUp: Int) -> String {
        var lines = ["clinic day: \(exams) exams at \(Int(speed))x, warm-up \(warmUp) exams",
                     "| after | wall s | dexad RSS MB | anonymous MB | files MB | heap in use MB | of it SQLite MB | SQLite page caches MB | log ring MB | working heap MB | heap free MB | fds | threads | dexa-sim RSS MB | fds |",
                     "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in samples {
            func mb(_ bytes: Int?) -> String { bytes.map { String(format: "%.1f", Double($0) / 1_048_576) } ?? "-" }
            lines.append(String(format: "| %@ | %.0f | %.1f | %.1f | %.1f | %@ | %@ | %@ | %@ | %@ | %@ | %d | %d | %@ | %@ |", s.label, s.wallSeconds,
                                Double(s.daemon.residentKB) / 1024, Double(s.daemon.anonymousKB) / 1024, Double(s.daemon.fileKB) / 1024,
                                mb(s.memory?.heapInUseBytes), mb(s.memory?.sqliteBytes), mb(s.memory?.sqlitePageCacheBytes), mb(s.memory?.logRingBytes),
                                mb(s.memory?.workingHeapBytes), mb(s.memory?.heapFreeBytes), s.daemon.fileDescriptors, s.daemon.threads,
                                s.simulator.map { String(format: "%.1f", Double($0.residentKB) / 1024) } ?? "-",
                                s.simulator.map { String($0.fileDescriptors) } ?? "-"))
        }
        return lines.joined(separator: "\n")
    }
}
