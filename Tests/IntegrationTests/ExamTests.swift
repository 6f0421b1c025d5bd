import DXAcquisition
import DXAnalysis
import DXControl
import DXDecomposition
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// Exams through the real daemon and control socket on the simulator's parametric patient.
@Suite("Exams", .serialized)
struct ExamTests {
    static let timeScale = 50.0

    /// A state directory with a calibration in it: the checked-in one (`CalibrationFixture`,
    /// made by `dexa service calibrate` on the same simulator). `calibratedOnTheDevice` below
    /// and the analysis tests calibrate for real.
    static func calibrated(_ dir: TemporaryDirectory) async throws {
        try CalibrationFixture.install(stateDirectory: dir.file("state"))
    }

    /// A real calibration: the daemon is started once with the calibration phantom on the
    /// table, calibrated, and stopped (the patient lies down next). For a test that needs the
    /// calibration's capture as well (`dexa analyze`).
    static func calibratedOnTheDevice(_ dir: TemporaryDirectory) async throws {
        let phantom = dir.file("calibration-phantom.json")
        try JSONEncoder().encode(StandardPhantoms.calibration).write(to: URL(fileURLWithPath: phantom))
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: timeScale, config: ["simulator_phantom = calibration"])
        try await daemon.waitForDevice()
        _ = try await daemon.call(.serviceCalibrate, CalibrateParams(phantom: phantom))
        daemon.child.signal(SIGTERM)
        _ = await daemon.child.waitForExit()
    }

    static func patientDaemon(_ dir: TemporaryDirectory, patient: String = "patient", extra: [String] = []) async throws -> DaemonProcess {
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: timeScale, config: ["simulator_phantom = \(patient)"] + extra)
        try await daemon.waitForDevice()
        return daemon
    }

    static let patient: JSONValue = .object(["id": .string("P-0042"), "name": .string("Ada Example"), "sex": .string("female"),
                                              "birth_date": .string("1956-03-14"), "ethnicity": .string("white")])

    static var clearAnswers: JSONValue {
        .object(["pregnancy": .string("no"), "contrast": .string("none"), "nuclear_medicine": .string("none"), "recent_fracture": .array([]),
                 "metal": .array([]), "jewellery_removed": .bool(true), "height_cm": .number(162), "weight_kg": .number(64),
                 "measured_today": .bool(true), "identity_confirmed": .bool(true), "referral_confirmed": .bool(true)])
    }

    static func newExam(_ daemon: DaemonProcess, answers: JSONValue = clearAnswers) async throws -> Int {
        let e = try await daemon.call("exam.create", .object(["patient": patient, "referral": .string("Dr Who: postmenopausal, screening")]))
        let id = try #require(e["id"]?.intValue)
        _ = try await daemon.call("exam.checklist", .object(["exam_id": .number(Double(id)), "answers": answers]))
        return id
    }

    /// The technologist's client stops reading while its step scans (`dexa exam run` suspended
    /// with Ctrl-Z): the step runs at its pace to its end, and when the client reads again it
    /// finds the answer to its `exam.start` and every step notice in order. (Images and progress
    /// are not queued while 64 lines wait for a connection: `DisplayNoticeTests`; a step at test
    /// speed sends about 130 kB, which the socket's own buffer holds, so here they all arrive.)
    @Test func aClientThatStopsReadingDuringItsStepStillGetsItsAnswer() async throws {
        let dir = TemporaryDirectory()
        try await Self.calibrated(dir)
        let daemon = try await Self.patientDaemon(dir)
        defer { daemon.child.stop() }
        let id = try await Self.newExam(daemon)
        let client = try SilentClient(socketPath: daemon.socketPath)
        defer { client.close() }
        try client.send(#"{"jsonrpc": "2.0", "id": 7, "method": "exam.start", "params": {"exam_id": \#(id)}}"#)
        // The step, watched from another connection while the client reads nothing.
        try await eventually("the spine's step ends", seconds: 120) {
            guard let e = try? await daemon.call("exam.get", .object(["exam_id": .number(Double(id))])), case .array(let a)? = e["attempts"] else { return false }
            return a.contains { $0["status"]?.stringValue == "completed" }
        }
        let (lines, bytes) = client.drain()
        let answer = lines.first { $0["id"]?.intValue == 7 }
        #expect(answer?["result"]?["attempt"]?["status"]?.stringValue == "completed", "\(String(describing: answer))")
        let phases = lines.filter { $0["method"]?.stringValue == "exam.step" }.compactMap { $0["params"]?["phase"]?.stringValue }
        #expect(phases.contains("scanning") && phases.last == "done", "\(phases)")
        let images = lines.filter { $0["method"]?.stringValue == "scan.image" }
        let planned = images.compactMap { $0["params"]?["planned_lines"]?.intValue }.max() ?? 0
        var rows = Set<Int>()
        for image in images { if case .array(let r)? = image["params"]?["rows"] { for row in r { if let l = row["line"]?.intValue { rows.insert(l) } } } }
        let progress = lines.filter { $0["method"]?.stringValue == "scan.progress" }.count
        print("a client that stopped reading during its step: \(lines.count) lines (\(bytes) bytes) waiting for it, \(images.count) images with \(rows.count) of \(planned) rows, \(progress) progress, steps \(phases)")
        #expect(planned > 0 && !rows.isEmpty && progress > 0)
    }

    /// The technologist's client gone while the gantry moves to the site (its process ended:
    /// the socket closed): the step stops at once and its attempt says why, not "timed out" or
    /// "link lost" as the cancelled wait for the motion would read.
    @Test func aClientGoneDuringPositioningLeavesItsReasonOnRecord() async throws {
        let dir = TemporaryDirectory()
        try await Self.calibrated(dir)
        // Real time: the move to the spine takes seconds.
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 1, config: ["simulator_phantom = patient"])
        defer { daemon.child.stop() }
        try await daemon.waitForDevice()
        let id = try await Self.newExam(daemon)
        let exam: JSONValue = .number(Double(id))
        let client = try SilentClient(socketPath: daemon.socketPath)
        try client.send(#"{"jsonrpc": "2.0", "id": 1, "method": "exam.start", "params": {"exam_id": \#(id)}}"#)
        try await eventually("the gantry moving for the step", seconds: 30) {
            guard let s = try? await daemon.call("device.status") else { return false }
            return s["state"]?.stringValue == "MOVING" && s["xray_on"] == .bool(false)
        }
        client.close()
        try await eventually("the step ended", seconds: 30) {
            guard let e = try? await daemon.call("exam.get", .object(["exam_id": exam])), case .array(let a)? = e["attempts"] else { return false }
            return !a.isEmpty && !a.contains { $0["status"]?.stringValue == "running" }
        }
        let shown = try await daemon.call("exam.get", .object(["exam_id": exam]))
        let attempt = shown["attempts"]?[0]
        #expect(attempt?["status"]?.stringValue == "aborted", "\(shown)")
        #expect(attempt?["reason"]?.stringValue?.hasPrefix("cancelled: the client that ran the step went away") == true, "\(String(describing: attempt))")
        #expect((try await daemon.call("device.status"))["xray_on"] == .bool(false))
    }

    /// An abort while the scout exposes: X-rays off, the step ends aborted "during the scout",
    /// its dose (the scout's) and its capture (the scout's) on the record, no site scan.
    @Test func abortDuringTheScout() async throws {
        let dir = TemporaryDirectory()
        try await Self.calibrated(dir)
        // Real time: the scout lasts 1.2 s of device time, 24 ms at the suite's 50×.
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 1, config: ["simulator_phantom = patient"])
        try await daemon.waitForDevice()
        let id = try await Self.newExam(daemon)
        let exam: JSONValue = .number(Double(id))
        let step = Task { try await daemon.call("exam.start", .object(["exam_id": exam])) }
        try await eventually("the scout exposing", seconds: 30) {
            guard let shown = try? await daemon.call("exam.get", .object(["exam_id": exam])),
                  case .array(let attempts)? = shown["attempts"], let a = attempts.last, a["exposure"] == nil,
                  let s = try? await daemon.call("device.status") else { return false }
            // The scout's lines lie over the spine (y 580–800 mm); the dark scan is in the air zone.
            return s["xray_on"] == .bool(true) && (s["y_um"]?.numberValue ?? 0) < 1_500_000
        }
        let aborted = try await daemon.call("exam.abort", .object(["exam_id": exam, "reason": .string("patient unwell"), "cause": .string("patient_condition")]))
        let stepped = try? await step.value
        // The technologist's cause is on the exam's record and in its results (the RIS's code).
        #expect(aborted["state"]?.stringValue == "aborted" && aborted["abort_cause"]?.stringValue == "patient_condition", "\(aborted)")
        // The abort answers once the step has recorded its end: the record it returns (the
        // one the RIS and the dose report are made from) holds the aborted attempt.
        if case .array(let shown)? = aborted["attempts"] {
            #expect(shown.last?["status"]?.stringValue == "aborted" && shown.last?["ended_at"] != nil, "\(shown)")
        } else { Issue.record("no attempts in \(aborted)") }
        let results = try await daemon.call("exam.results", .object(["exam_id": exam]))
        #expect(results["abort_cause"]?.stringValue == "patient_condition" && results["abort_reason"]?.stringValue == "patient unwell", "\(results)")
        let attempt = stepped?["attempt"]
        #expect(attempt?["status"]?.stringValue == "aborted", "\(String(describing: stepped))")
        #expect(attempt?["reason"]?.stringValue?.contains("during the scout") == true, "\(String(describing: attempt))")
        #expect(attempt?["exposure"] == nil || attempt?["exposure"] == .null)
        #expect((attempt?["dose"]?["scans"]?.intValue ?? 0) >= 1, "the scout's dose is on the record: \(String(describing: attempt))")
        #expect(attempt?["capture"]?.stringValue != nil)
        #expect(try await daemon.call("device.status")["xray_on"] == .bool(false))
    }

    /// An abort while requests for the next site keep arriving (a second console, a script):
    /// none of them starts a step, whether it reaches the sequencer while the scan runs, between
    /// the step's end and the abort's, or after it; the exam ends aborted with the one attempt,
    /// and nothing exposes after the abort. The requests are sent back to back from before the
    /// abort until a second after it answered, so that some land in each window.
    @Test func nextRequestsDuringAnAbortStartNothing() async throws {
        let dir = TemporaryDirectory()
        try await Self.calibrated(dir)
        let daemon = try await Self.patientDaemon(dir)
        let id = try await Self.newExam(daemon)
        let exam: JSONValue = .number(Double(id))
        let step = Task { try await daemon.call("exam.start", .object(["exam_id": exam])) }
        try await eventually("the spine scan exposing", seconds: 60) {
            guard let shown = try? await daemon.call("exam.get", .object(["exam_id": exam])),
                  case .array(let attempts)? = shown["attempts"], attempts.last?["exposure"] != nil,
                  let s = try? await daemon.call("device.status") else { return false }
            return s["xray_on"] == .bool(true)
        }
        let stop = StopFlag()
        let nexts = Task { () -> (sent: Int, started: Int) in
            var sent = 0, started = 0
            while await !stop.isSet {
                sent += 1
                if (try? await daemon.call("exam.next", .object(["exam_id": exam]))) != nil { started += 1 }
            }
            return (sent, started)
        }
        let aborted = try await daemon.call("exam.abort", .object(["exam_id": exam, "reason": .string("patient unwell"), "cause": .string("patient_condition")]))
        try await Task.sleep(for: .seconds(1))
        await stop.set()
        let (sent, started) = await nexts.value
        _ = try? await step.value
        print("exam.next during and after the abort: \(sent) sent, \(started) answered with a step")
        #expect(sent >= 10, "too few requests to reach the windows: \(sent)")
        #expect(started == 0)
        #expect(aborted["state"]?.stringValue == "aborted", "\(aborted)")
        let shown = try await daemon.call("exam.get", .object(["exam_id": exam]))
        if case .array(let attempts)? = shown["attempts"] {
            #expect(attempts.count == 1 && attempts.first?["status"]?.stringValue == "aborted", "\(attempts)")
        } else { Issue.record("no attempts in \(shown)") }
        #expect(shown["state"]?.stringValue == "aborted")
        #expect(try await daemon.call("device.status")["xray_on"] == .bool(false))
    }

    /// The whole standard exam from the CLI, as a technologist runs it.
    @Test func fullStandardExamThroughTheCLI() async throws {
        let dir = TemporaryDirectory()
        try await Self.calibrated(dir)
        // A DX-1 in its own process, so that its own record of every exposure can be held
        // against what the host counted.
        let sim = try await SimulatorProcess(in: dir, speed: Self.timeScale, extra: ["--phantom", "patient"])
        let daemon = try await DaemonProcess(in: dir, device: "sim:\(sim.devicePath)", timeScale: Self.timeScale)
        try await daemon.waitForDevice()
        let clock = ContinuousClock(), start = clock.now

        let created = try await daemon.cli(["exam", "new", "--patient-id", "P-0042", "--name", "Ada Example", "--sex", "female",
                                            "--birth-date", "1956-03-14", "--referral", "screening", "--json"])
        #expect(created.status == 0, "\(created.err)")
        let exam = try #require(try JSONDecoder().decode(JSONValue.self, from: Data(created.out.utf8))["id"]?.intValue)
        // Nothing exposes before the checklist is complete.
        let early = try await daemon.cli(["exam", "run", String(exam), "--auto"])
        #expect(early.status != 0 && early.err.contains("checklist"), "\(early.out) \(early.err)")
        let checklist = try await daemon.cli(["exam", "checklist", String(exam), "--pregnancy", "no", "--contrast", "none", "--nuclear", "none",
                                              "--no-fracture", "--no-metal", "--jewellery-removed", "--height", "162", "--weight", "64",
                                              "--measured-today", "--identity-confirmed", "--referral-confirmed"])
        #expect(checklist.status == 0 && checklist.out.contains("complete"), "\(checklist.out) \(checklist.err)")
        #expect(checklist.out.contains("BMI 24.4"))

        let run = try await daemon.cli(["exam", "run", String(exam), "--auto"])
        let wall = (clock.now - start)
        print(run.out)
        #expect(run.status == 0, "\(run.err)")
        #expect(run.out.contains("completed"))

        let shown = try await daemon.call("exam.get", .object(["exam_id": .number(Double(exam))]))
        #expect(shown["state"]?.stringValue == "completed")
        guard case .array(let attempts)? = shown["attempts"] else { Issue.record("no attempts"); return }
        #expect(attempts.map { $0["site"]?.stringValue ?? "" } == ["ap_spine", "left_hip", "right_hip", "lateral_spine"])
        for a in attempts {
            #expect(a["status"]?.stringValue == "completed", "\(a)")
            #expect(a["lines"]?.intValue == a["planned_lines"]?.intValue)
            let capture = try #require(a["capture"]?.stringValue)
            #expect(FileManager.default.fileExists(atPath: capture))
            // The site's decomposed scan, stored with the exam, with its geometry.
            let decomposed = try DecomposedScan.read(path: try #require(a["decomposed"]?.stringValue))
            #expect(decomposed.provenance.region == a["site"]?.stringValue && decomposed.geometry.lines == a["planned_lines"]?.intValue)
            #expect(decomposed.provenance.armAngleDeg == (a["site"]?.stringValue == "lateral_spine" ? 90 : 0))
            let bmd = a["quick_look"]?["mean_bone_bmd_g_cm2"]?.numberValue ?? 0
            print(String(format: "quick look %@: bone %.1f cm², mean %.3f g/cm²", a["site"]?.stringValue ?? "?", a["quick_look"]?["bone_area_cm2"]?.numberValue ?? 0, bmd))
            #expect((0.5...1.6).contains(bmd), "\(a)")
            if case .array(let w)? = a["warnings"] {
                // A still patient on a well-behaved device: no warning. At 50× a heartbeat late
                // by 12 ms of wall time is 600 ms of device time and is reported; on a loaded
                // machine that happens, and the simulator's watchdog floor lets it pass (the
                // heartbeat's own timing is the conformance suite's to check, at 1× and 10×).
                // The same holds for the timing checks (stall, jitter, overrun, underrun): at 50×
                // a 130 ms hiccup of a busy machine is a 6.6 s stall; they have their own tests
                // at speeds whose margins exceed the scheduling jitter ten times (TimingTests,
                // stallAndSlowLineRateAreReported).
                let timing: Set<String> = ["heartbeat", "stall", "jitter", "overrun", "underrun"]
                let real = w.filter { !timing.contains($0["kind"]?.stringValue ?? "") }
                #expect(real.isEmpty, "\(real)")
            }
            // Every attempt carries its dose: the scout's dark and lines, then dark, air and the
            // site's scan, as the device reported it.
            #expect(a["dose"]?["scans"]?.intValue == 5, "\(a)")
            // The scout chose the mode: the simulator's standard patient (18 g/cm² at the
            // midline) is standard for the spine; beside the hips the body thins to where the
            // standard exposure would saturate, and the hips are scanned thin.
            let expectedMode = ["ap_spine": "standard", "left_hip": "thin", "right_hip": "thin"][a["site"]?.stringValue ?? ""]
            if let expectedMode { #expect(a["exposure"]?["mode"]?.stringValue == expectedMode, "\(a["exposure"] ?? .null)") }
            print("exposure \(a["site"]?.stringValue ?? "?"): \(a["exposure"] ?? .null)")
            #expect(a["exposure"]?["scout_capture"]?.stringValue != nil)
            #expect((a["dose"]?["exposure_ms"]?.numberValue ?? 0) > 0)
            #expect(a["dose"]?["estimated"] == .bool(false))
        }
        // Every scan of the exam is counted in the metrics, and the dose adds up.
        let metrics = try await daemon.call(.serviceMetrics, MetricsParams()).metrics
        #expect(metrics.scansCompleted == 20)
        let examDAP = attempts.reduce(0.0) { $0 + ($1["dose"]?["dap_mgy_cm2"]?.numberValue ?? 0) }
        let examExposure = attempts.reduce(0.0) { $0 + ($1["dose"]?["exposure_ms"]?.numberValue ?? 0) }
        #expect(abs(metrics.dapMGyCm2 - examDAP) < 1e-6, "metrics \(metrics.dapMGyCm2), exam \(examDAP)")
        #expect(Double(metrics.exposureMs) == examExposure)
        // The simulator's own record: one exposure per scan that turned X-rays on (the 12
        // scouts, air scans and site scans; dark scans do not), each at least as long as the
        // exposure the device reported for it.
        let simulated = try await sim.status()
        guard case .array(let exposures)? = simulated["exposures"] else { Issue.record("no exposures from the simulator"); return }
        #expect(exposures.count == 12, "\(exposures.count) exposures")
        let simulatedMs = exposures.reduce(0.0) { $0 + (($1["xrayOffMs"]?.numberValue ?? 0) - ($1["xrayOnMs"]?.numberValue ?? 0)) }
        #expect(simulatedMs >= examExposure * 0.999, "X-rays on \(simulatedMs) ms in the simulator, \(examExposure) ms counted")
        // The same in Prometheus text format.
        let text = try #require(try await daemon.call(.serviceMetrics, MetricsParams(format: .prometheus)).text)
        func sample(_ name: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        #expect(sample("dexa_scans_total{result=\"completed\"}") == 20, "\(text)")
        #expect(abs((sample("dexa_exposure_seconds_total") ?? 0) - examExposure / 1000) < 1e-6)
        #expect(abs((sample("dexa_dap_mgy_cm2_total") ?? 0) - examDAP) < 1e-6)
        // The exam record carries the sum, as the metrics count it.
        #expect(shown["dose"]?["scans"]?.intValue == 20 && shown["dose"]?["exposure_ms"]?.numberValue == examExposure, "\(shown["dose"] ?? .null)")
        #expect(abs((shown["dose"]?["dap_mgy_cm2"]?.numberValue ?? 0) - metrics.dapMGyCm2) < 1e-6)
        print(String(format: "full exam dose: %.0f ms of exposure, DAP %.3f mGy·cm² over 20 scans", examExposure, examDAP))
        print(String(format: "full exam: %.1f s wall at %.0f×", Double(wall.components.seconds) + Double(wall.components.attoseconds) * 1e-18, Self.timeScale))
        #expect(wall < .seconds(60))
        let listed = try await daemon.cli(["exam", "list"])
        #expect(listed.out.contains("P-0042") && listed.out.contains("completed"))

        // The clinical answer: the AP spine analysed when its scan completed, stored with the
        // exam, the same as the analysis of its stored decomposed scan now.
        let report = try await daemon.cli(["exam", "report", String(exam), "--json"])
        #expect(report.status == 0, "\(report.err)")
        let results = try JSONDecoder().decode(ExamResults.self, from: Data(report.out.utf8))
        let spine = try #require(results.sites.first { $0.site == "ap_spine" }?.result, "\(report.out)")
        #expect(spine.rois.map(\.name) == ["L1", "L2", "L3", "L4", "L1-L4"])
        #expect(spine.rois.allSatisfy { !$0.excluded && $0.bmdGCm2 != nil && $0.tScore != nil })
        #expect(spine.spine?.labelling.decidedBy == .iliacCrests && spine.spine?.labelling.cuesAgree == true)
        #expect(results.diagnosis.whoClass != nil && results.diagnosis.tScore != nil, "\(results.diagnosis)")
        #expect((results.patient.ageYears ?? 0) >= 70, "born 1956-03-14")
        let stored = try DecomposedScan.read(path: try #require(attempts.first?["decomposed"]?.stringValue))
        let again = SiteAnalysis.analyze(stored, patient: PatientContext(sex: "female", birthDate: "1956-03-14",
                                                                         on: ISO8601DateFormatter().date(from: shown["started_at"]?.stringValue ?? "") ?? Date()))
        #expect((try? again.get().rois) == spine.rois)
        // Both hips analysed the same way: the neck and the total hip scored, the others shown,
        // the stored decomposed scan giving the same ROIs; the diagnosis over all three sites.
        for (k, hip) in ["left_hip", "right_hip"].enumerated() {
            let result = try #require(results.sites.first { $0.site == hip }?.result, "\(hip): \(results.sites.first { $0.site == hip }?.note ?? "no note")")
            #expect(result.rois.map(\.name) == ["neck", "trochanter", "intertrochanter", "total_hip", "wards"])
            #expect(result.roi("neck")?.tScore != nil && result.roi("total_hip")?.tScore != nil, "\(hip)")
            let hipAttempt = try #require(attempts.dropFirst(k + 1).first)
            let hipStored = try DecomposedScan.read(path: try #require(hipAttempt["decomposed"]?.stringValue))
            let hipAgain = SiteAnalysis.analyze(hipStored, patient: PatientContext(sex: "female", birthDate: "1956-03-14",
                                                                                 on: ISO8601DateFormatter().date(from: shown["started_at"]?.stringValue ?? "") ?? Date()))
            #expect((try? hipAgain.get().rois) == result.rois, "\(hip)")
        }
        let reportText = try await daemon.cli(["exam", "report", String(exam)])
        print(reportText.out)
        #expect(reportText.out.contains("L1-L4") && reportText.out.contains("diagnosis:"))
        // The report page, as PDF and PNG, with the spine's image from the stored decomposed scan.
        let page = try await daemon.cli(["exam", "report", String(exam), "--pdf", dir.file("report.pdf"), "--png", dir.file("report.png")])
        #expect(page.status == 0 && page.err.isEmpty, "\(page.err)")
        #expect((try? FileManager.default.attributesOfItem(atPath: dir.file("report.pdf"))[.size] as? Int).flatMap { $0 } ?? 0 > 10_000)
        #expect(FileManager.default.contents(atPath: dir.file("report.png"))?.starts(with: [0x89, 0x50, 0x4E, 0x47]) == true)
        // Every page's PNG is named on the output and is there (the spine and both hips take two).
        let images = page.out.split(separator: "\n").filter { $0.hasPrefix("report image: ") }.map { String($0.dropFirst("report image: ".count)) }
        #expect(images.first == dir.file("report.png") && !images.isEmpty, "\(page.out)")
        for image in images { #expect(FileManager.default.contents(atPath: image)?.starts(with: [0x89, 0x50, 0x4E, 0x47]) == true, "\(image)") }
        // The site's capture carries the patient's sex and birth date for offline scores.
        let capture = try #require(attempts.first?["capture"]?.stringValue)
        let (header, _) = try CaptureReader.read(path: capture)
        #expect(header.patient == CapturePatient(sex: "female", birthDate: "1956-03-14"))
    }

    /// Each checklist rule through the socket; nothing exposes until the checklist is complete.
    @Test func checklistRulesThroughTheSocket() async throws {
        let dir = TemporaryDirectory()
        try await Self.calibrated(dir)
        let daemon = try await Self.patientDaemon(dir)
        func answer(_ id: Int, _ fields: [String: JSONValue]) async throws -> JSONValue {
            try await daemon.call("exam.checklist", .object(["exam_id": .number(Double(id)), "answers": .object(fields)]))
        }
        func refusedToStart(_ id: Int) async throws -> RPCError? {
            do { _ = try await daemon.call("exam.start", .object(["exam_id": .number(Double(id))])); return nil } catch let e as RPCError { return e }
        }
        let today = Date()
        let day = { (offset: Int) in ISO8601DateFormatter.string(from: today.addingTimeInterval(Double(offset) * 86_400), timeZone: TimeZone(identifier: "UTC")!,
                                                                  formatOptions: [.withFullDate]) }
        // Pregnancy blocks.
        var id = try await Self.newExam(daemon)
        var r = try await answer(id, ["pregnancy": .string("yes")])
        #expect(r["state"]?.stringValue == "blocked")
        #expect((try await refusedToStart(id))?.code == RPCError.examStateCode)
        _ = try await daemon.call("exam.abort", .object(["exam_id": .number(Double(id))]))
        // Contrast ten days ago blocks and names the earliest date.
        id = try await Self.newExam(daemon)
        r = try await answer(id, ["contrast": .string(day(-10))])
        #expect(r["checklist"]?["blocks"]?[0]?["earliest_date"]?.stringValue == day(4), "\(r)")
        #expect((try await refusedToStart(id))?.message.contains(day(4)) == true)
        _ = try await daemon.call("exam.abort", .object(["exam_id": .number(Double(id))]))
        // Over the weight limit blocks.
        id = try await Self.newExam(daemon)
        r = try await answer(id, ["weight_kg": .number(215)])
        #expect(r["checklist"]?["blocks"]?[0]?["item"]?.stringValue == "weight_kg")
        _ = try await daemon.call("exam.abort", .object(["exam_id": .number(Double(id))]))
        // Incomplete: refused, and the firmware never turned X-rays on.
        id = try await Self.newExam(daemon, answers: .object(["pregnancy": .string("no")]))
        let incomplete = try await refusedToStart(id)
        #expect(incomplete?.code == RPCError.examStateCode && incomplete?.message.contains("jewellery_removed") == true, "\(String(describing: incomplete))")
        let log = try await daemon.call("service.log")
        #expect((log["text"]?.stringValue ?? "").contains("X-ray ON") == false)
        // Metal in the left hip: the right hip is scanned, and the finding is carried.
        var metal = Self.clearAnswers
        if case .object(var o) = metal { o["metal"] = .array([.string("left_hip")]); metal = .object(o) }
        r = try await answer(id, ["jewellery_removed": .bool(true)])
        _ = r
        let withMetal = try await Self.newExam(daemon, answers: metal)
        let e = try await daemon.call("exam.get", .object(["exam_id": .number(Double(withMetal))]))
        #expect(e["plan"] == .array([.string("ap_spine"), .string("right_hip"), .string("lateral_spine")]))
        #expect(e["checklist"]?["findings"]?[0]?.stringValue?.contains("right hip is measured instead") == true)
        // Every answer was recorded with who gave it (the store is checked in the unit tests).
    }

    /// Requests that are wrong in every way get clear errors and change nothing.
    @Test func badExamRequestsChangeNothing() async throws {
        let dir = TemporaryDirectory()
        try await Self.calibrated(dir)
        let daemon = try await Self.patientDaemon(dir)
        let id = try await Self.newExam(daemon)
        let before = try await daemon.call("exam.get", .object(["exam_id": .number(Double(id))]))
        let cases: [(String, JSONValue, Int)] = [
            ("exam.get", .object(["exam_id": .number(9999)]), RPCError.invalidParamsCode),
            ("exam.start", .object(["exam_id": .string("one")]), RPCError.invalidParamsCode),
            ("exam.next", .object(["exam_id": .number(Double(id))]), RPCError.examStateCode),
            ("exam.checklist", .object(["exam_id": .number(Double(id)), "answers": .object(["height_cm": .string("tall")])]), RPCError.invalidParamsCode),
            ("exam.checklist", .object(["exam_id": .number(Double(id)), "answers": .object(["pregnancy": .string("perhaps")])]), RPCError.invalidParamsCode),
            ("exam.checklist", .object(["exam_id": .number(Double(id)), "answers": .object(["contrast": .string("2026-02-30")])]), RPCError.invalidParamsCode),
            ("exam.checklist", .object(["exam_id": .number(Double(id)), "answers": .object(["weight_kg": .number(-3)])]), RPCError.invalidParamsCode),
            ("exam.skip", .object(["exam_id": .number(Double(id)), "site": .string("knee"), "reason": .string("x")]), RPCError.invalidParamsCode),
            ("exam.create", .object(["patient": .object(["id": .string("X")]), "referral": .string("r")]), RPCError.invalidParamsCode),
            ("exam.create", .object(["patient": Self.patient, "referral": .string("  ")]), RPCError.invalidParamsCode),
            ("exam.list", .object(["limit": .number(0)]), RPCError.invalidParamsCode),
            ("exam.get", .array([]), RPCError.invalidParamsCode),
        ]
        for (method, params, code) in cases {
            do {
                _ = try await daemon.call(method, params)
                Issue.record("\(method) \(params) was accepted")
            } catch let e as RPCError {
                #expect(e.code == code, "\(method) \(params): \(e.code) \(e.message)")
                #expect(!e.message.isEmpty)
            }
        }
        let after = try await daemon.call("exam.get", .object(["exam_id": .number(Double(id))]))
        #expect(before == after, "the exam changed")
        // A second exam cannot start while one is in progress.
        _ = try await daemon.call("exam.start", .object(["exam_id": .number(Double(id))]))
        let other = try await Self.newExam(daemon)
        do {
            _ = try await daemon.call("exam.start", .object(["exam_id": .number(Double(other))]))
            Issue.record("a second exam started")
        } catch let e as RPCError {
            #expect(e.code == RPCError.examStateCode && e.message.contains("exam \(id) is in progress"), "\(e)")
        }
        _ = try await daemon.call("exam.abort", .object(["exam_id": .number(Double(id))]))
        let aborted = try await daemon.call("exam.get", .object(["exam_id": .number(Double(id))]))
        #expect(aborted["state"]?.stringValue == "aborted")
    }
}

/// Patient movement and device timing during exams, on the simulator.
@Suite("Exam stillness and timing checks", .serialized)
struct ExamChecksTests {
    static func patientFile(_ dir: TemporaryDirectory, shiftMM: Double, atYMM: Double) throws -> String {
        let path = dir.file("patient-moving.json")
        let json = #"{"patient": {"motion": {"fromYMM": \#(atYMM), "shiftXMM": \#(shiftMM), "rotationDegrees": 0}}}"#
        try Data(json.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func startedAttempt(_ daemon: DaemonProcess) async throws -> (Int, JSONValue) {
        let id = try await ExamTests.newExam(daemon)
        let step = try await daemon.call("exam.start", .object(["exam_id": .number(Double(id))]))
        return (id, try #require(step["attempt"]))
    }

    /// 3 mm at y = 650 mm (line 70 of the AP spine): the scan stops, the site is offered again.
    @Test func movementOverTheLimitStopsTheScan() async throws {
        let dir = TemporaryDirectory()
        try await ExamTests.calibrated(dir)
        let daemon = try await ExamTests.patientDaemon(dir, patient: try Self.patientFile(dir, shiftMM: 3, atYMM: 650))
        let (id, attempt) = try await Self.startedAttempt(daemon)
        print("moved 3 mm: \(attempt)")
        #expect(attempt["status"]?.stringValue == "motion")
        let motion = try #require(attempt["motion"]?[0])
        let line = try #require(motion["line"]?.intValue), shift = try #require(motion["shift_mm"]?.numberValue)
        #expect((70...72).contains(line), "found at line \(line)")
        #expect(abs(shift - 3) <= 0.5)
        #expect(motion["stopped"] == .bool(true))
        #expect((attempt["lines"]?.intValue ?? 999) < 90, "the scan stopped within a few lines of the movement")
        #expect(try await daemon.call("device.status")["xray_on"] == .bool(false))
        // The site is offered for rescan: exam.next scans the AP spine again.
        let again = try await daemon.call("exam.next", .object(["exam_id": .number(Double(id))]))
        #expect(again["attempt"]?["site"]?.stringValue == "ap_spine")
        #expect(again["attempt"]?["attempt"]?.intValue == 2)
    }

    /// 1.5 mm: flagged, the scan completes, and `dexa analyze` finds the same movement offline;
    /// the decomposed scan the exam stored is the one `dexa analyze` makes from the capture.
    @Test func movementUnderTheLimitIsFlagged() async throws {
        let dir = TemporaryDirectory()
        try await ExamTests.calibratedOnTheDevice(dir)
        let daemon = try await ExamTests.patientDaemon(dir, patient: try Self.patientFile(dir, shiftMM: -1.5, atYMM: 690))
        let (_, attempt) = try await Self.startedAttempt(daemon)
        #expect(attempt["status"]?.stringValue == "completed")
        let motion = try #require(attempt["motion"]?[0])
        #expect(motion["stopped"] == .bool(false))
        #expect((110...112).contains(motion["line"]?.intValue ?? -1), "\(motion)")
        // The movement is one of the attempt's warnings. At 50× a busy machine can add timing
        // warnings (a stall is a few line periods, tens of ms of wall time here): those are the scaled
        // clock's honest view and may come before it, so the movement is looked up by kind.
        guard case .array(let warnings) = attempt["warnings"] else { Issue.record("no warnings in \(attempt)"); return }
        let flagged = warnings.filter { $0["kind"]?.stringValue == "motion" }
        #expect(flagged.count == 1 && flagged.first?["line"] == motion["line"], "\(warnings)")
        let timing: Set<String> = ["stall", "jitter", "overrun", "underrun", "heartbeat"]
        #expect(warnings.allSatisfy { $0["kind"]?.stringValue == "motion" || timing.contains($0["kind"]?.stringValue ?? "") }, "\(warnings)")
        // Offline, on the capture the daemon wrote: the same check, the same movement.
        let calibration = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: daemon.stateDirectory + "/calibration.json")))
        let analysed = try await runCLI(["analyze", "--calibration", try #require(calibration["source"]?.stringValue),
                                         try #require(attempt["capture"]?.stringValue), "--json", "--decomposed", dir.file("offline.dxdec"),
                                         "--image", dir.file("site.png")])
        #expect(analysed.status == 0, "\(analysed.err)")
        // The image of a patient scan is the report's figure of the site at 4 pixels a point: the
        // spine's 220 × 144 mm within 190 pt wide and 250 pt high.
        let png = try #require(FileManager.default.contents(atPath: dir.file("site.png")))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 24)
        if png.count > 24 {
            #expect(png[16..<20].reduce(0) { $0 << 8 | Int($1) } == Int((250.0 * 144 / 220 * 4).rounded()), "PNG width")
            #expect(png[20..<24].reduce(0) { $0 << 8 | Int($1) } == 1000, "PNG height")
        }
        let out = try JSONDecoder().decode(JSONValue.self, from: Data(analysed.out.utf8))
        #expect(out["motion"]?[0]?["line"] == motion["line"], "\(out)")
        #expect(out["motion"]?[0]?["shift_mm"] == motion["shift_mm"])
        print("flagged movement: live \(motion), offline \(out["motion"] ?? .null)")
        let stored = try DecomposedScan.read(path: try #require(attempt["decomposed"]?.stringValue))
        let offline = try DecomposedScan.read(path: dir.file("offline.dxdec"))
        #expect(stored.geometry == offline.geometry && stored.geometry.lines == 220 && stored.geometry.pitchMM == 1)
        #expect(stored.provenance.region == "ap_spine" && stored.provenance.armAngleDeg == 0 && stored.provenance.capture == attempt["capture"]?.stringValue)
        #expect(stored.provenance.scanID == offline.provenance.scanID)
        #expect(stored.rowPresent.allSatisfy { $0 })
        #expect(stored.bone.map(\.bitPattern) == offline.bone.map(\.bitPattern), "live and offline decompositions differ")
        #expect(stored.marks == offline.marks && stored.softTissue.map(\.bitPattern) == offline.softTissue.map(\.bitPattern))
        // The movement is kept with the decomposed scan, and the site's analysis names it.
        #expect(stored.motion.count == 1 && stored.motion == offline.motion && stored.motion.first?.line == motion["line"]?.intValue)
        guard case .array(let analysisWarnings) = attempt["analysis"]?["warnings"] else { Issue.record("no analysis in \(attempt)"); return }
        #expect(analysisWarnings.contains { $0["code"]?.stringValue == "patient_moved" }, "\(analysisWarnings)")
    }

    /// A stall and a slow line rate injected into the simulator are each reported as they happen.
    @Test func stallAndSlowLineRateAreReported() async throws {
        let dir = TemporaryDirectory()
        let sim = try await SimulatorProcess(in: dir, speed: ExamTests.timeScale, extra: ["--phantom", "calibration"])
        let protocolFile = dir.file("protocol.json")
        try Data(#"{"sites": {"ap_spine": {"lines": 60}, "left_hip": {"lines": 60}}}"#.utf8).write(to: URL(fileURLWithPath: protocolFile))
        let daemon = try await DaemonProcess(in: dir, device: "sim:\(sim.devicePath)", timeScale: ExamTests.timeScale,
                                             config: ["exam_protocol = \(protocolFile)"])
        try await daemon.waitForDevice()
        let phantom = dir.file("calibration-phantom.json")
        try JSONEncoder().encode(StandardPhantoms.calibration).write(to: URL(fileURLWithPath: phantom))
        _ = try await daemon.call("service.calibrate", .object(["phantom": .string(phantom)]))
        #expect(try await sim.control("phantom patient").hasPrefix("ok"))

        let id = try await ExamTests.newExam(daemon)
        // A 5 s stall (of device time) once the AP spine scan is under way (its lines lie
        // at y 580–640 mm; the references before it are in the air zone; the scout before them
        // crosses the same lines, and the attempt records its mode once the scout is done).
        let first = Task { try await daemon.call("exam.start", .object(["exam_id": .number(Double(id))])) }
        try await eventually("the AP spine scan exposing", seconds: 20) {
            guard let shown = try? await daemon.call("exam.get", .object(["exam_id": .number(Double(id))])),
                  case .array(let attempts)? = shown["attempts"], attempts.last?["exposure"] != nil,
                  let s = try? await daemon.call("device.status") else { return false }
            return s["xray_on"] == .bool(true) && (580_000..<620_000).contains(s["y_um"]?.numberValue ?? 0)
        }
        let stall = try await sim.control("stall 5000")
        #expect(stall.hasPrefix("ok"), "\(stall)")
        let firstStep = try await first.value
        let kinds = (firstStep["attempt"]?["warnings"]).map { w -> [String] in if case .array(let a) = w { a.compactMap { $0["kind"]?.stringValue } } else { [] } } ?? []
        print("stall: \(firstStep["attempt"]?["warnings"] ?? .null)")
        #expect(kinds.contains("stall"), "\(kinds)")
        #expect(kinds.contains("overrun"), "a 5 s stall makes a 60 s scan overrun: \(kinds)")

        // Lines 1.5 times slower than configured.
        #expect(try await sim.control("rate 1.5").hasPrefix("ok"))
        let second = try await daemon.call("exam.next", .object(["exam_id": .number(Double(id))]))
        let slow = (second["attempt"]?["warnings"]).map { w -> [String] in if case .array(let a) = w { a.compactMap { $0["kind"]?.stringValue } } else { [] } } ?? []
        print("slow rate: \(second["attempt"]?["warnings"] ?? .null)")
        #expect(slow.contains("jitter") && slow.contains("overrun"), "\(slow)")
        _ = try await sim.control("clear")
    }
}

/// kill -9 at random moments of an exam: after each restart every finished scan is intact, the
/// interrupted one is marked interrupted with the lines its capture holds (all readable, none
/// missing), and the exam goes on from there.
@Suite("Exam crash safety", .serialized)
struct ExamCrashTests {
    @Test func killNineTwentyTimesDuringAnExam() async throws {
        let dir = TemporaryDirectory()
        try await ExamTests.calibrated(dir)
        var rng = SystemRandomNumberGenerator()
        var exam: Int?
        var interruptedSeen = 0, linesChecked = 0
        var delays: [Int] = []
        for kill in 1...20 {
            let daemon = try await ExamTests.patientDaemon(dir)
            // After a restart: what the store says against what the captures hold.
            if let id = exam {
                let e = try await daemon.call("exam.get", .object(["exam_id": .number(Double(id))]))
                #expect(e["state"]?.stringValue == "in_progress" || e["state"]?.stringValue == "completed", "kill \(kill): \(e["state"] ?? .null)")
                guard case .array(let attempts)? = e["attempts"] else { Issue.record("no attempts"); return }
                for a in attempts {
                    let status = a["status"]?.stringValue ?? "?"
                    #expect(status != "running", "kill \(kill): an attempt left running: \(a)")
                    guard let capture = a["capture"]?.stringValue, let scanID = a["scan_id"]?.intValue else { continue }
                    let shown = try await runCLI(["capture", "show", capture, "--json"])
                    let scans = try JSONDecoder().decode(JSONValue.self, from: Data(shown.out.utf8))["scans"]
                    let measured: JSONValue? = if case .array(let s)? = scans { s.first { $0["scan_id"]?.intValue == scanID } } else { nil }
                    let inCapture = measured?["lines"]?.intValue ?? 0
                    #expect(measured?["missing_lines"]?.intValue == 0, "kill \(kill): lines missing in \(capture)")
                    #expect(a["lines"]?.intValue == inCapture, "kill \(kill): the store says \(a["lines"] ?? .null) lines, the capture holds \(inCapture): \(a)")
                    if status == "completed" { #expect(inCapture == a["planned_lines"]?.intValue) }
                    if status == "interrupted" { interruptedSeen += 1 }
                    linesChecked += inCapture
                }
            }
            // Start (or go on with) the exam, and kill the daemon at a random moment of it.
            let step: Task<Void, Never>
            if let id = exam {
                step = Task { _ = try? await daemon.call("exam.next", .object(["exam_id": .number(Double(id))])) }
            } else {
                let id = try await ExamTests.newExam(daemon)
                exam = id
                step = Task { _ = try? await daemon.call("exam.start", .object(["exam_id": .number(Double(id))])) }
            }
            let delay = Int.random(in: 150...2500, using: &rng)
            delays.append(delay)
            try await Task.sleep(for: .milliseconds(delay))
            daemon.child.signal(SIGKILL)
            _ = await daemon.child.waitForExit()
            step.cancel()
        }
        // The exam resumes and finishes.
        let daemon = try await ExamTests.patientDaemon(dir)
        let id = try #require(exam)
        for _ in 0..<8 {
            let e = try await daemon.call("exam.get", .object(["exam_id": .number(Double(id))]))
            if e["state"]?.stringValue == "completed" { break }
            _ = try await daemon.call("exam.next", .object(["exam_id": .number(Double(id))]))
        }
        let final = try await daemon.call("exam.get", .object(["exam_id": .number(Double(id))]))
        #expect(final["state"]?.stringValue == "completed")
        let attempts: [JSONValue] = if case .array(let a)? = final["attempts"] { a } else { [] }
        let sites = Set(attempts.filter { $0["status"]?.stringValue == "completed" }.compactMap { $0["site"]?.stringValue })
        #expect(sites == ["ap_spine", "left_hip", "right_hip", "lateral_spine"])
        let interrupted = attempts.filter { $0["status"]?.stringValue == "interrupted" }
        print("crash safety: 20 kills at \(delays) ms after a step began; \(attempts.count) attempts in all, \(interrupted.count) interrupted (lines: \(interrupted.compactMap { $0["lines"]?.intValue })); \(linesChecked) lines compared with the captures over the restarts")
        #expect(interruptedSeen > 0)
    }
}

/// The technologist's other actions: skip with a reason, repeat, add, abort during a scan; and
/// no exam without a calibration.
@Suite("Exam actions", .serialized)
struct ExamActionTests {
    @Test func noCalibrationNoExposure() async throws {
        let dir = TemporaryDirectory()
        let daemon = try await ExamTests.patientDaemon(dir)
        let id = try await ExamTests.newExam(daemon)
        do {
            _ = try await daemon.call("exam.start", .object(["exam_id": .number(Double(id))]))
            Issue.record("an exam started without a calibration")
        } catch let e as RPCError {
            #expect(e.code == RPCError.notCalibratedCode, "\(e)")
        }
        let log = try await daemon.call("service.log")
        #expect((log["text"]?.stringValue ?? "").contains("X-ray ON") == false)
        let e = try await daemon.call("exam.get", .object(["exam_id": .number(Double(id))]))
        #expect(e["state"]?.stringValue == "ready", "a refused start leaves the exam as it was")
    }

    @Test func skipRepeatAddAndAbortDuringAScan() async throws {
        let dir = TemporaryDirectory()
        try await ExamTests.calibrated(dir)
        let daemon = try await ExamTests.patientDaemon(dir)
        let id = try await ExamTests.newExam(daemon)
        let exam = JSONValue.number(Double(id))
        _ = try await daemon.call("exam.start", .object(["exam_id": exam]))
        // Skip the left hip (a reason is required), repeat the spine, add the left hip back.
        do {
            _ = try await daemon.call("exam.skip", .object(["exam_id": exam, "site": .string("left_hip"), "reason": .string(" ")]))
            Issue.record("a skip without a reason")
        } catch let e as RPCError { #expect(e.code == RPCError.invalidParamsCode) }
        var e = try await daemon.call("exam.skip", .object(["exam_id": exam, "site": .string("left_hip"), "reason": .string("hip replacement found on the scout")]))
        #expect(e["attempts"]?[1]?["status"]?.stringValue == "skipped")
        #expect(e["attempts"]?[1]?["reason"]?.stringValue?.contains("hip replacement") == true)
        let repeated = try await daemon.call("exam.repeat", .object(["exam_id": exam]))
        #expect(repeated["attempt"]?["site"]?.stringValue == "ap_spine")
        #expect(repeated["attempt"]?["attempt"]?.intValue == 2)
        e = try await daemon.call("exam.add", .object(["exam_id": exam, "site": .string("left_hip")]))
        #expect(e["plan"]?[3]?.stringValue == "left_hip")
        // Abort from another connection while the right hip is scanning (its scout done, the
        // attempt's exposure mode recorded, X-rays on over the hip): X-rays off at once.
        let step = Task { try await daemon.call("exam.next", .object(["exam_id": exam])) }
        try await eventually("the right hip scanning", seconds: 20) {
            guard let shown = try? await daemon.call("exam.get", .object(["exam_id": exam])),
                  case .array(let attempts)? = shown["attempts"], attempts.last?["site"]?.stringValue == "right_hip",
                  attempts.last?["exposure"] != nil, let s = try? await daemon.call("device.status") else { return false }
            return s["xray_on"] == .bool(true) && (s["y_um"]?.numberValue ?? 0) < 1_500_000
        }
        e = try await daemon.call("exam.abort", .object(["exam_id": exam, "reason": .string("patient unwell")]))
        #expect(e["state"]?.stringValue == "aborted")
        let stepped = try? await step.value
        #expect(stepped?["attempt"]?["status"]?.stringValue == "aborted", "\(String(describing: stepped))")
        // The device reports no dose for the aborted scan: the attempt's dose is the host's estimate.
        #expect(stepped?["attempt"]?["dose"]?["estimated"] == .bool(true), "\(String(describing: stepped))")
        #expect((stepped?["attempt"]?["dose"]?["exposure_ms"]?.numberValue ?? 0) > 0)
        #expect(try await daemon.call("device.status")["xray_on"] == .bool(false))
        let final = try await daemon.call("exam.get", .object(["exam_id": exam]))
        #expect(final["state"]?.stringValue == "aborted")
        // An aborted exam goes no further.
        do {
            _ = try await daemon.call("exam.next", .object(["exam_id": exam]))
            Issue.record("an aborted exam went on")
        } catch let err as RPCError { #expect(err.code == RPCError.examStateCode) }
    }
}

/// Set once, read by a loop in another task.
private actor StopFlag {
    private(set) var isSet = false
    func set() { isSet = true }
}
