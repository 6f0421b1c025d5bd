import DXAcquisition
import DXControl
import DXDicom
import DXTestSupport
import Foundation
import Testing

/// The hospital's side of an exam through the real processes: DCMTK's worklist server serves
/// today's three items; `dexa worklist` lists them; an exam started from one
/// (`dexa exam new --worklist`) runs on the simulator; dexa-dicomd sends its objects to
/// Orthanc, whose REST API shows every one under the worklist's accession number and Study
/// Instance UID; `dexa dicom export` copies them to a folder; dciodvfy finds no error in any;
/// dsrdump reads the results report with the numbers `dexa exam report` gives; the RIS
/// (pynetdicom's MPPS SCP) hears the exam start and end with its series and dose.
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
        let ris = try await MPPSServer()
        defer { ris.stop() }
        let config = dir.file("dicom.conf")
        try """
            # The test's station and peers
            ae_title = DEXA1
            station_name = DX1-TEST
            worklist = \(worklist.aeTitle)@127.0.0.1:\(worklist.port)
            storage = \(orthanc.aeTitle)@127.0.0.1:\(orthanc.dicomPort)
            mpps = \(ris.aeTitle)@127.0.0.1:\(ris.port)
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
        // dexa-dicomd runs from before the exam starts (as its unit does): it announces the
        // exam's start to the RIS, then builds the exam's objects and sends them to the PACS.
        let dicomd = try DicomQueueTests.dicomd(dir, config: config, run: 1)
        defer { dicomd.stop() }
        try await Task.sleep(for: .milliseconds(500))
        let run = try await daemon.cli(["exam", "run", String(exam), "--auto"])
        #expect(run.status == 0, "\(run.err)")

        let q = try await DicomQueueTests.waitFor(daemon) { q in
            !q.objects.isEmpty && q.sent == q.objects.count && q.steps.first?.state == .completed
        }
        #expect(!q.objects.isEmpty && q.sent == q.objects.count, "\(q.objects.map { "\($0.name) \($0.state) \($0.lastError ?? "")" }) \(dicomd.log.suffix(2000))")
        #expect(q.objects.count >= 8, "four sites, the report's pages, the results and dose reports: \(q.objects.map(\.name))")
        #expect(q.objects.filter { $0.name.hasSuffix("-sr") }.count == 2)
        let stored = try await orthanc.instances()
        #expect(stored.count == q.objects.count)
        for instance in stored {
            let tags = try await orthanc.tags(ofInstance: instance["ID"] as? String ?? "")
            #expect(tags["AccessionNumber"] as? String == "ACC-2")
            #expect(tags["StudyInstanceUID"] as? String == "1.2.826.0.1.3680043.10.9.2")
            #expect(tags["PatientID"] as? String == "P-0043")
            #expect(tags["PatientName"] as? String == "Müller^Zoë")
            let isReport = tags["SOPClassUID"] as? String != "1.2.840.10008.5.1.4.1.1.7"
            #expect(tags["Modality"] as? String == (isReport ? "SR" : "BMD"))
            if isReport {
                let request = (tags["ReferencedRequestSequence"] as? [[String: Any]])?.first
                #expect(request?["AccessionNumber"] as? String == "ACC-2", "the reports' Referenced Request Sequence")
                continue
            }
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
        // The same as DICOM media (a CD for another hospital): PS3.10 file IDs and a DICOMDIR
        // that lists every object once, which dciodvfy and DCMTK read; exported twice, still once.
        let cd = dir.file("cd")
        for _ in 0..<2 {
            let onMedia = try await daemon.cli(["dicom", "export", "--exam", String(exam), "--media", cd, "--json"])
            #expect(onMedia.status == 0, "\(onMedia.err)")
        }
        let mediaFiles = DicomMedia.filesOnMedium(root: cd)
        #expect(mediaFiles.count == q.objects.count && mediaFiles.allSatisfy { $0.hasPrefix(DicomMedia.examFolder(Int64(exam)) + "/") }, "\(mediaFiles)")
        let (dumpStatus, directory) = try DicomTools.run(DicomTools.dcmdump, [cd + "/DICOMDIR"])
        #expect(dumpStatus == 0, "\(directory.suffix(2000))")
        let records = directory.split(separator: "\n").filter { $0.contains("(0004,1511)") }
        #expect(records.count == q.objects.count, "one record per object: \(records)")
        for o in q.objects { #expect(records.contains { $0.contains(o.sopInstanceUID) }, "\(o.name) in the DICOMDIR") }
        #expect(directory.contains("DICOM\\EX"), "file IDs in the records")
        let (directoryErrors, _) = try DicomTools.verify(cd + "/DICOMDIR")
        #expect(directoryErrors.isEmpty, "DICOMDIR: \(directoryErrors)")
        let studies = try await orthanc.get("/studies") as? [String] ?? []
        #expect(studies.count == 1, "every object in the one study the RIS scheduled")

        // The results report, read by dsrdump: each region's BMD, T- and Z-score as the
        // exam's report gives them.
        let sr = try #require(files.first { $0.hasSuffix("results-sr.dcm") })
        let (status, dump) = try DicomTools.run(DicomTools.dsrdump, ["+Pc", "+Pl", sr])
        #expect(status == 0, "\(dump)")
        let report = try await daemon.cli(["exam", "report", String(exam), "--json"])
        #expect(report.status == 0, "\(report.err)")
        let results = try JSONDecoder().decode(ExamResults.self, from: Data(report.out.utf8))
        let groups = dump.components(separatedBy: "(125007,DCM,\"Measurement Group\")").dropFirst()
        var compared = 0
        for site in results.sites {
            for roi in site.result?.rois ?? [] {
                let group = groups.first { $0.contains("\"Tracking Identifier\")=\"\(site.title) \(roi.name)\"") }
                #expect(group != nil, "\(site.title) \(roi.name) in the results report")
                if let bmd = roi.bmdGCm2 {
                    #expect(group?.contains("=\"\(String(format: "%.3f", bmd))\" (g/cm2,UCUM") == true, "\(site.title) \(roi.name) BMD \(bmd)")
                    compared += 1
                }
                if let t = roi.tScore {
                    #expect(group?.contains("=\"\(String(format: "%.1f", t))\" (1,UCUM") == true, "\(site.title) \(roi.name) T \(t)")
                    compared += 1
                }
            }
        }
        #expect(compared >= 10, "the spine's and the hips' regions")

        // The RIS heard the exam start and end: one N-CREATE, one N-SET (COMPLETED) listing
        // every object, with the exam's dose.
        let step = try #require(q.steps.first)
        #expect(ris.messages == ["N-CREATE \(step.sopInstanceUID) 0x0000", "N-SET \(step.sopInstanceUID) 0x0000"], "\(ris.log) \(dicomd.log.suffix(2000))")
        let merged = try DicomFile.read(try #require(ris.file(step.sopInstanceUID, "merged")))
        #expect(merged.text(.performedProcedureStepStatus) == "COMPLETED")
        #expect(merged.items(.scheduledStepAttributesSequence).first?.text(.accessionNumber) == "ACC-2")
        let referenced = merged.items(.performedSeriesSequence).flatMap { $0.items(.referencedImageSequence) + $0.items(.referencedNonImageCompositeSOPInstanceSequence) }
        #expect(Set(referenced.compactMap { $0.text(.referencedSOPInstanceUID) }) == Set(q.objects.map(\.sopInstanceUID)))
        let dap = results.dose.dapMGyCm2
        #expect(merged.text(.imageAndFluoroscopyAreaDoseProduct) == String(format: "%.5f", dap / 100), "the exam's DAP, \(dap) mGy·cm², in dGy·cm²")
        #expect(merged.items(.exposureDoseSequence).count == results.exposures.count && !results.exposures.isEmpty)
    }
}
