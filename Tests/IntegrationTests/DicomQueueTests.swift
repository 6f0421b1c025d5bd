import DXAcquisition
import DXControl
import DXTestSupport
import Foundation
import Testing

/// Store and forward through the real processes: the PACS is down during the exam; dexad
/// publishes the finished exam's results, dexa-dicomd builds the objects and queues them in
/// the exam store (the queue holds, retried with backoff); dexad and dexa-dicomd are killed
/// and started again (the queue resumes), the PACS comes up: every object arrives once.
/// `dexa dicom queue` shows it all.
@Suite("DICOM queue", .serialized)
struct DicomQueueTests {
    static func dicomd(_ dir: TemporaryDirectory, config: String, run: Int) throws -> ChildProcess {
        try ChildProcess(executable: BuiltProducts.path("dexa-dicomd"),
                         arguments: ["--state-directory", dir.file("state"), "--dicom-config", config, "--poll-seconds", "0.2", "--retry-seconds", "1",
                                     "--log-level", "debug"],
                         logPath: dir.file("dexa-dicomd-\(run).log"))
    }

    static func queue(_ daemon: DaemonProcess) async throws -> DicomQueueStatus {
        let r = try await daemon.cli(["dicom", "queue", "--json"])
        return try JSONDecoder().decode(DicomQueueStatus.self, from: Data(r.out.utf8))
    }

    /// Polls `condition` on the queue every 100 ms for up to `seconds` (far longer than the
    /// retries it waits for take: 1, 2, 4 s).
    static func waitFor(_ daemon: DaemonProcess, seconds: Double = 60, _ condition: (DicomQueueStatus) -> Bool) async throws -> DicomQueueStatus {
        let deadline = Date().addingTimeInterval(seconds)
        var last = try await queue(daemon)
        while !condition(last) && Date() < deadline {
            try await Task.sleep(for: .milliseconds(100))
            last = try await queue(daemon)
        }
        return last
    }

    @Test(.enabled(if: DicomTools.available)) func thePACSDownAndTheServiceKilledLoseNothingAndSendNothingTwice() async throws {
        let dir = TemporaryDirectory()
        let pacsPort = try DicomTools.freePort()
        let config = dir.file("dicom.conf")
        try "ae_title = DEXA1\nstorage = ORTHANC@127.0.0.1:\(pacsPort)\nconnect_timeout_s = 2\n".write(toFile: config, atomically: true, encoding: .utf8)
        try await ExamTests.calibrated(dir)
        let sim = try await SimulatorProcess(in: dir, speed: ExamTests.timeScale, extra: ["--phantom", "patient"])
        var daemon = try await DaemonProcess(in: dir, device: "sim:\(sim.devicePath)", timeScale: ExamTests.timeScale)
        try await daemon.waitForDevice()
        // The DICOM service runs from the start; the PACS is down throughout the exam.
        var dicomd = try Self.dicomd(dir, config: config, run: 1)
        let created = try await daemon.cli(["exam", "new", "--patient-id", "P-0077", "--name", "Grace Example", "--sex", "female",
                                            "--birth-date", "1950-05-05", "--referral", "screening", "--json"])
        let exam = try #require(try JSONDecoder().decode(JSONValue.self, from: Data(created.out.utf8))["id"]?.intValue)
        _ = try await daemon.cli(["exam", "checklist", String(exam), "--pregnancy", "no", "--contrast", "none", "--nuclear", "none",
                                  "--no-fracture", "--no-metal", "--jewellery-removed", "--height", "160", "--weight", "60",
                                  "--measured-today", "--identity-confirmed", "--referral-confirmed"])
        let run = try await daemon.cli(["exam", "run", String(exam), "--auto"])
        #expect(run.status == 0, "\(run.err)")

        // The exam's objects wait for the PACS.
        var q = try await Self.waitFor(daemon) { q in !q.objects.isEmpty && q.objects.allSatisfy { $0.attempts >= 2 } }
        #expect(q.objects.count >= 6, "four sites and the report's pages: \(q.objects.map(\.name)) \(dicomd.log.suffix(2000))")
        #expect(q.pending == q.objects.count && q.sent == 0)
        #expect(q.objects.allSatisfy { $0.lastError?.contains("ORTHANC@127.0.0.1:\(pacsPort)") == true }, "\(q.objects.map(\.lastError))")
        #expect(q.objects.allSatisfy { FileManager.default.fileExists(atPath: $0.path) })
        let count = q.objects.count
        // The metrics say what waits (a monitor alerts on dexa_dicom_queue_stuck).
        let prometheus = try await daemon.cli(["service", "metrics", "--prometheus"])
        func gauge(_ name: String) -> Double? {
            prometheus.out.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        #expect(gauge("dexa_dicom_queue_pending") == Double(count), "\(prometheus.out)")
        #expect(gauge("dexa_dicom_queue_stuck") == 0)
        #expect((gauge("dexa_dicom_queue_oldest_pending_seconds") ?? 0) > 0)
        let metrics = try await daemon.cli(["service", "metrics", "--json"])
        let figures = try JSONDecoder().decode(MetricsResult.self, from: Data(metrics.out.utf8)).metrics.dicomQueue
        #expect(figures?.pending == count && figures?.stuck == false, "\(metrics.out)")

        // Both killed at any moment, started again: the queue is in the store.
        dicomd.signal(SIGKILL)
        daemon.child.signal(SIGKILL)
        _ = await dicomd.waitForExit()
        _ = await daemon.child.waitForExit()
        daemon = try await DaemonProcess(in: dir, device: "sim:\(sim.devicePath)", timeScale: ExamTests.timeScale)
        try await daemon.waitForDevice()
        #expect(try await Self.queue(daemon).objects.count == count, "the queue after the restart")
        dicomd = try Self.dicomd(dir, config: config, run: 2)
        defer { dicomd.stop() }
        let attemptsWhileDown = q.objects.map(\.attempts)
        let orthanc = try await OrthancServer(dicomPort: pacsPort)
        defer { orthanc.stop() }
        let up = Date()
        q = try await Self.waitFor(daemon) { $0.sent == count }
        print(String(format: "PACS down: %d objects held, %@ attempts each before the restart; dexad and dexa-dicomd killed and started again; PACS up: all sent %.1f s later, each once",
                     count, "\(Set(attemptsWhileDown).sorted())", Date().timeIntervalSince(up)))
        #expect(q.sent == count, "\(q.objects.map { "\($0.name) \($0.state) \($0.lastError ?? "")" }) \(dicomd.log.suffix(3000))")
        #expect(q.objects.count == count, "built once: the restart queued nothing again")
        #expect(q.stuck == false)
        #expect(try await orthanc.instances().count == count)
        #expect(try await orthanc.newInstances() == count, "each object stored once")
        // A second service round much later sends nothing more.
        try await Task.sleep(for: .seconds(1))
        #expect(try await Self.queue(daemon).objects.map(\.attempts) == q.objects.map(\.attempts))
        let text = try await daemon.cli(["dicom", "queue", "--exam", String(exam)])
        #expect(text.status == 0 && text.out.contains("\(count) sent"), "\(text.out)")
        // A service engineer's resend: the same instances again, the PACS keeps one of each.
        let resend = try await daemon.cli(["dicom", "resend", "--exam", String(exam), "--json"])
        #expect(resend.status == 0, "\(resend.err)")
        #expect(try JSONDecoder().decode(DicomQueueStatus.self, from: Data(resend.out.utf8)).pending == count)
        q = try await Self.waitFor(daemon) { $0.sent == count }
        #expect(q.sent == count && q.objects.allSatisfy { $0.lastError == nil })
        #expect(try await orthanc.instances().count == count)
        let none = try await daemon.cli(["dicom", "resend", "--exam", "999"])
        #expect(none.status != 0 && none.err.contains("999"), "\(none.err)")
        // X-rays were never the DICOM service's business: dexad links no DICOM library.
        let ldd = try DicomTools.run("/usr/bin/ldd", [BuiltProducts.path("dexad")])
        #expect(!ldd.output.lowercased().contains("dcm"))
    }
}
