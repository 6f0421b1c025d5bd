import DXControl
import DXTestSupport
import Foundation
import Testing

/// The hospital's side of an exam through the real processes: DCMTK's worklist server serves
/// today's three items; `dexa worklist` lists them; an exam started from one
/// (`dexa exam new --worklist`) runs on the simulator; dexa-dicomd sends its objects to
/// Orthanc, whose REST API shows every one under the worklist's accession number and Study
/// Instance UID; `dexa dicom export` copies them to a folder; dciodvfy finds no error in any.
@Suite("DICOM exam", .serialized)
struct DicomExamTests {
    static func today() -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone.current
        let c = calendar.dateComponents([.year, .month, .day], from: Date())
        return String(format: "%04d%02d%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0)
    }

    @Test(.enabled(if: DicomTools.available)) func anExamFromTheWorklistReachesPACSUnderItsOrder() async throws {
        let dir = TemporaryDirectory()
        let worklist = try await WorklistServer(items: WorklistServer.exampleItems(date: Self.today()))
        defer { worklist.stop() }
        let orthanc = try await OrthancServer()
        defer { orthanc.stop() }
        let config = dir.file("dicom.conf")
        try """
            # The test's station and peers
            ae_title = DEXA1
            station_name = DX1-TEST
            worklist = \(worklist.aeTitle)@127.0.0.1:\(worklist.port)
            storage = \(orthanc.aeTitle)@127.0.0.1:\(orthanc.dicomPort)
            """.write(toFile: config, atomically: true, encoding: .utf8)

        // The day's list: four items for this station (one from a Latin-1 RIS), none for another.
        let listed = try await runCLI(["worklist", "--dicom-config", config])
        #expect(listed.status == 0, "\(listed.err)")
        for text in ["ACC-1", "ACC-2", "ACC-3", "ACC-5", "Ada Example", "Zoë Müller", "Chidi Okafor", "Søren Ødegård"] {
            #expect(listed.out.contains(text), "\(listed.out)")
        }
        #expect(!listed.out.contains("ACC-4"))
        let json = try await runCLI(["worklist", "--dicom-config", config, "--json"])
        let items = try JSONDecoder().decode([JSONValue].self, from: Data(json.out.utf8))
        #expect(items.count == 4)
        // echo: the worklist and the PACS answer.
        let echo = try await runCLI(["dicom", "echo", "--dicom-config", config])
        #expect(echo.status == 0, "\(echo.out) \(echo.err)")

        try await ExamTests.calibrated(dir)
        let sim = try await SimulatorProcess(in: dir, speed: ExamTests.timeScale, extra: ["--phantom", "patient"])
        let daemon = try await DaemonProcess(in: dir, device: "sim:\(sim.devicePath)", timeScale: ExamTests.timeScale)
        try await daemon.waitForDevice()
        // Patient options with --worklist are refused: nothing is retyped.
        let both = try await daemon.cli(["exam", "new", "--worklist", "ACC-2", "--name", "Someone Else", "--dicom-config", config])
        #expect(both.status == 64, "\(both.err)")
        let unknown = try await daemon.cli(["exam", "new", "--worklist", "ACC-9", "--dicom-config", config])
        #expect(unknown.status == 64 && unknown.err.contains("ACC-9"), "\(unknown.err)")
        let created = try await daemon.cli(["exam", "new", "--worklist", "ACC-2", "--dicom-config", config, "--json"])
        #expect(created.status == 0, "\(created.err)")
        let record = try JSONDecoder().decode(JSONValue.self, from: Data(created.out.utf8))
        let exam = try #require(record["id"]?.intValue)
        #expect(record["patient"]?["id"]?.stringValue == "P-0043")
        #expect(record["patient"]?["name"]?.stringValue == "Zoë Müller")
        #expect(record["patient"]?["birth_date"]?.stringValue == "1948-01-01")
        #expect(record["scheduled"]?["accession_number"]?.stringValue == "ACC-2")
        #expect(record["scheduled"]?["study_instance_uid"]?.stringValue == "1.2.826.0.1.3680043.10.9.2")
        #expect(record["scheduled"]?["patient_name"]?.stringValue == "Müller^Zoë")

        let checklist = try await daemon.cli(["exam", "checklist", String(exam), "--pregnancy", "no", "--contrast", "none", "--nuclear", "none",
                                              "--no-fracture", "--no-metal", "--jewellery-removed", "--height", "158", "--weight", "61",
                                              "--measured-today", "--identity-confirmed", "--referral-confirmed"])
        #expect(checklist.status == 0, "\(checklist.err)")
        let run = try await daemon.cli(["exam", "run", String(exam), "--auto"])
        #expect(run.status == 0, "\(run.err)")

        // dexa-dicomd builds the exam's objects and sends them to the PACS.
        let dicomd = try DicomQueueTests.dicomd(dir, config: config, run: 1)
        defer { dicomd.stop() }
        let q = try await DicomQueueTests.waitFor(daemon) { q in !q.objects.isEmpty && q.sent == q.objects.count }
        #expect(!q.objects.isEmpty && q.sent == q.objects.count, "\(q.objects.map { "\($0.name) \($0.state) \($0.lastError ?? "")" }) \(dicomd.log.suffix(2000))")
        #expect(q.objects.count >= 6, "four sites and the report's pages: \(q.objects.map(\.name))")
        let stored = try await orthanc.instances()
        #expect(stored.count == q.objects.count)
        for instance in stored {
            let tags = try await orthanc.tags(ofInstance: instance["ID"] as? String ?? "")
            #expect(tags["AccessionNumber"] as? String == "ACC-2")
            #expect(tags["StudyInstanceUID"] as? String == "1.2.826.0.1.3680043.10.9.2")
            #expect(tags["PatientID"] as? String == "P-0043")
            #expect(tags["PatientName"] as? String == "Müller^Zoë")
            #expect(tags["Modality"] as? String == "BMD")
            let request = (tags["RequestAttributesSequence"] as? [[String: Any]])?.first
            #expect(request?["RequestedProcedureID"] as? String == "RP-ACC-2", "the Request Attributes Sequence: \(tags["RequestAttributesSequence"] ?? "none")")
            #expect(request?["ScheduledProcedureStepID"] as? String == "SPS-ACC-2")
        }
        // The same objects exported to a folder, each read by dciodvfy: no error.
        let out = dir.file("export")
        let export = try await daemon.cli(["dicom", "export", "--exam", String(exam), out, "--json"])
        #expect(export.status == 0, "\(export.err)")
        let files = try JSONDecoder().decode([[String: String]].self, from: Data(export.out.utf8)).compactMap { $0["file"] }
        #expect(files.count == q.objects.count)
        for file in files {
            let (errors, _) = try DicomTools.verify(file)
            #expect(errors.isEmpty, "\(file): \(errors)")
        }
        let studies = try await orthanc.get("/studies") as? [String] ?? []
        #expect(studies.count == 1, "every object in the one study the RIS scheduled")
    }
}
