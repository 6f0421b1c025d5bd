import ArgumentParser
import DXAcquisition
import DXAnalysis
import DXControl
import DXDicom
import DXReport
import Foundation

/// The DICOM settings every DICOM command reads.
struct DicomOptions: ParsableArguments {
    @Option(name: .customLong("dicom-config"), help: "The station's DICOM settings (AE title, UID root, peers).")
    var dicomConfig: String = ProcessInfo.processInfo.environment["DEXA_DICOM_CONFIG"] ?? DicomConfiguration.defaultPath

    func configuration(optional: Bool = false) throws -> DicomConfiguration {
        do { return try DicomConfiguration.load(path: dicomConfig, optional: optional) } catch {
            throw CLIError(message: error.description, status: .badInput)
        }
    }
}

/// `dexa worklist`: today's scheduled procedures for this station, from the Modality Worklist.
struct Worklist: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Today's scheduled procedures for this station, from the hospital's Modality Worklist (C-FIND).",
        discussion: "Asks the worklist peer of the DICOM settings for the steps scheduled for this station's AE title and modality on the day. Start an exam from one with dexa exam new --worklist ACCESSION.")
    @OptionGroup var output: OutputOptions
    @OptionGroup var dicom: DicomOptions
    @Option(help: "The day (YYYY-MM-DD); today when not given.") var date: String?
    @Flag(help: "Every station's steps, not only this station's AE title.") var allStations = false

    func run() async throws {
        let config = try dicom.configuration()
        let day: String
        if let date {
            guard let da = DicomDate.da(date) else { throw CLIError(message: "--date must be YYYY-MM-DD, not '\(date)'", status: .badInput) }
            day = da
        } else {
            day = DicomDate.today()
        }
        let found = try await WorklistLookup.query(WorklistQuery(stationAETitle: allStations ? nil : config.aeTitle, date: day, modality: config.worklistModality),
                                                   config: config, dicom: dicom)
        let listing = WorklistListing(found)
        let items = listing.items, refused = listing.leftOut
        // What was left out is said on standard error in either form: the list is not silently short.
        for why in refused { FileHandle.standardError.write(Data("dexa worklist: left out: \(why)\n".utf8)) }
        if output.json { Output.json(items); return }
        if items.isEmpty {
            print("no procedures scheduled for \(allStations ? "any station" : config.aeTitle) on \(DicomDate.iso(day) ?? day)")
            return
        }
        print("time   accession        patient id    name                          sex  born        procedure")
        for i in items {
            let time = i.scheduledStart.count > 11 ? String(i.scheduledStart.suffix(5)) : "     "
            func pad(_ s: String, _ n: Int) -> String { s.count >= n ? String(s.prefix(n)) : s + String(repeating: " ", count: n - s.count) }
            print("\(pad(time, 6)) \(pad(i.accessionNumber, 16)) \(pad(i.patientID, 13)) \(pad(i.displayName, 29)) \(pad(i.patientSex, 4)) \(pad(i.birthDateISO ?? "-", 11)) \(i.requestedProcedureDescription)")
            if !i.referringPhysicianName.isEmpty || allStations {
                print("       referred by \(PersonName.display(i.referringPhysicianName))\(allStations ? " · station \(i.scheduledStationAETitle)" : "") · study \(i.studyInstanceUID)")
            }
        }
    }
}

/// `dexa dicom ...`: the exam's DICOM objects.
struct DicomCommands: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dicom", abstract: "The exams' DICOM objects: the queue to the hospital, a resend, a folder for a CD, a peer check.",
        subcommands: [Queue.self, Resend.self, Export.self, Echo.self])

    struct Queue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What waits for the hospital's PACS and RIS: each object, sent or pending (attempts, last error, next try), and each exam's procedure step (MPPS); exit 1 when the queue is stuck.")
        @OptionGroup var options: ConnectionOptions
        @Option(help: "Only this exam's objects.") var exam: Int64?

        func run() async throws {
            let q = try await options.call(.dicomQueue, DicomQueueParams(examID: exam))
            if options.json { Output.json(q) } else {
                let formatter = ISO8601DateFormatter()
                for o in q.objects {
                    var when = o.state == .sent ? "sent \(o.sentAt.map(formatter.string(from:)) ?? "")" : "pending, next try \(formatter.string(from: o.nextAttemptAt))"
                    if let c = o.committedAt { when += ", committed \(formatter.string(from: c))" } else if let asked = o.commitmentRequestedAt {
                        when += ", commitment asked \(formatter.string(from: asked))"
                    }
                    if let refused = o.commitmentError { when += " (commitment refused: \(refused))" }
                    print("exam \(o.examID) #\(o.id) \(o.name) (revision \(o.revision)): \(when), \(o.attempts) attempt\(o.attempts == 1 ? "" : "s")\(o.lastError.map { "; last: \($0)" } ?? "")")
                }
                for st in q.steps {
                    let when: String
                    switch st.state {
                    case .create: when = "start not yet announced, next try \(formatter.string(from: st.nextAttemptAt))"
                    case .inProgress: when = "in progress since \(st.createdAt.map(formatter.string(from:)) ?? "?"); ended when the exam's objects are built"
                    case .completed, .discontinued: when = "\(st.state.rawValue) \(st.endedAt.map(formatter.string(from:)) ?? "")"
                    case .failed: when = "FAILED"
                    }
                    print("exam \(st.examID) procedure step (MPPS): \(when), \(st.attempts) message\(st.attempts == 1 ? "" : "s")\(st.lastError.map { "; last: \($0)" } ?? "")")
                }
                let oldest = q.oldestPendingSeconds.map { String(format: ", the oldest waiting %.0f min", $0 / 60) } ?? ""
                print("\(q.pending) pending, \(q.sent) sent\(q.committed > 0 ? " (\(q.committed) committed)" : "")\(oldest)\(q.stuck ? String(format: ": STUCK (over %.0f min): check the PACS and dexa-dicomd (journalctl -u dexa-dicomd)", q.alertAfterSeconds / 60) : "")")
            }
            if q.stuck { throw ExitCode(ExitStatus.failure.rawValue) }
        }
    }

    struct Resend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send an exam's objects (or one) to the PACS again (service engineers): the same instances, the same UIDs.")
        @OptionGroup var options: ConnectionOptions
        @Option(help: "The exam.") var exam: Int64
        @Option(help: "Only this object (its # in dexa dicom queue).") var object: Int64?

        func run() async throws {
            let q = try await options.call(.dicomResend, DicomResendParams(examID: exam, objectID: object))
            if options.json { Output.json(q); return }
            print("exam \(exam): \(q.pending) objects due now; dexa-dicomd sends them on its next round")
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy an exam's DICOM objects (each site's image and the report's pages as Secondary Capture, modality BMD; the results and the dose reports, SR) to a folder, for a CD or a USB stick.",
            discussion: """
                The objects are the ones dexa-dicomd built for the PACS (the latest revision of the exam's results): the same files, the same UIDs. \
                They are named after what they hold (image-ap_spine.dcm, report-1.dcm, results-sr.dcm, dose-sr.dcm) in DIR/exam-N/. \
                With --media, DIR is laid out as DICOM media for a CD or a USB stick that another hospital's viewer opens: the files under \
                DIR/DICOM/EX<exam>/ (APSPINE, LEFTHIP, RIGHTHIP, LATSPINE, REPORT1..., RESULTS, DOSE) and a DICOMDIR at DIR listing \
                every exam exported there (General Purpose CD-R profile).
                """)
        @OptionGroup var options: ConnectionOptions
        @Option(help: "The exam number.") var exam: Int64
        @Flag(help: "DICOM media: PS3.10 file IDs and a DICOMDIR (for a CD or a USB stick).") var media = false
        @Argument(help: "The folder to write into (made when missing).") var directory: String

        func run() async throws {
            let q = try await options.call(.dicomQueue, DicomQueueParams(examID: exam))
            guard let latest = q.objects.filter({ $0.state != .superseded }).map(\.revision).max() else {
                let why = q.unbuilt.first?.error.map { "they cannot be built: \($0)" } ?? "dexa-dicomd has not built them yet (is it running? dexa dicom queue)"
                throw CLIError(message: "exam \(exam) has no DICOM objects: \(why)", status: .failure)
            }
            let objects = q.objects.filter { $0.revision == latest }
            let names = objects.map(\.name)
            let folder = (directory as NSString).appendingPathComponent(media ? DicomMedia.examFolder(exam) : "exam-\(exam)")
            // On a medium the exam's folder holds this export only (an earlier revision's
            // files would be listed with it).
            if media, FileManager.default.fileExists(atPath: folder) {
                do { try FileManager.default.removeItem(atPath: folder) } catch {
                    throw CLIError(message: "cannot empty \(folder): \(error.localizedDescription)", status: .failure)
                }
            }
            do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
                throw CLIError(message: "cannot make \(folder): \(error.localizedDescription)", status: .failure)
            }
            var written: [[String: String]] = []
            for o in objects {
                let path = (folder as NSString).appendingPathComponent(media ? DicomMedia.fileID(forObjectNamed: o.name, among: names) : o.name + ".dcm")
                do {
                    if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
                    try FileManager.default.copyItem(atPath: o.path, toPath: path)
                } catch {
                    throw CLIError(message: "cannot copy \(o.path) to \(path): \(error.localizedDescription)", status: .failure)
                }
                written.append(["file": path, "sop_instance_uid": o.sopInstanceUID, "sop_class_uid": o.sopClassUID, "revision": String(o.revision)])
            }
            if media {
                // The DICOMDIR lists every exam on the medium: this one and those exported before.
                do { try DicomMedia.writeDirectory(root: directory, files: DicomMedia.filesOnMedium(root: directory)) } catch {
                    throw CLIError(message: "cannot write the DICOMDIR: \(error.description)", status: .failure)
                }
                written.append(["file": (directory as NSString).appendingPathComponent("DICOMDIR"), "sop_class_uid": "1.2.840.10008.1.3.10"])
            }
            if options.json { Output.json(written); return }
            for w in written { print(w["file"] ?? "") }
        }
    }

    struct Echo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "C-ECHO each configured peer (worklist, MPPS, storage, commitment): does it answer?")
        @OptionGroup var output: OutputOptions
        @OptionGroup var dicom: DicomOptions

        func run() async throws {
            let config = try dicom.configuration()
            let peers = [("worklist", config.worklist), ("mpps", config.mpps), ("storage", config.storage), ("commitment", config.commitment)]
                .compactMap { name, peer in peer.map { (name, $0) } }
            guard !peers.isEmpty else { throw CLIError(message: "no peers in \(dicom.dicomConfig)", status: .badInput) }
            var failed = 0
            var report: [[String: String]] = []
            for (name, peer) in peers {
                let association = DicomAssociation(peer: peer, callingAETitle: config.aeTitle)
                do {
                    try await Blocking.run { try association.echo() }
                    report.append(["peer": name, "address": peer.description, "result": "answers"])
                } catch {
                    failed += 1
                    report.append(["peer": name, "address": peer.description, "result": "\(error)"])
                }
            }
            if output.json { Output.json(report) } else {
                for r in report { print("\(r["peer"] ?? "") \(r["address"] ?? ""): \(r["result"] ?? "")") }
            }
            if failed > 0 { throw ExitCode(ExitStatus.unreachable.rawValue) }
        }
    }
}


/// An exam from a worklist item: found by its accession number among today's items for this
/// station, its patient and order taken unchanged.
enum WorklistLookup {
    /// The worklist peer's answers to `query`, a failure said as the CLI says it.
    static func query(_ query: WorklistQuery, config: DicomConfiguration, dicom: DicomOptions) async throws -> DicomAssociation.WorklistAnswers {
        guard let peer = config.worklist else {
            throw CLIError(message: "no worklist peer in \(dicom.dicomConfig) (worklist = AE@host:port)", status: .badInput)
        }
        let association = DicomAssociation(peer: peer, callingAETitle: config.aeTitle)
        do {
            return try await Blocking.run { try association.findWorklist(query.dataset) }
        } catch let e as DicomFailure {
            throw CLIError(message: "worklist: \(e.description)", status: .unreachable)
        }
    }

    static func item(accession: String, dicom: DicomOptions) async throws -> WorklistItem {
        let config = try dicom.configuration()
        let found = try await query(WorklistQuery(stationAETitle: config.aeTitle, date: DicomDate.today(), modality: config.worklistModality),
                                    config: config, dicom: dicom)
        let matches = found.datasets.filter { $0.text(.accessionNumber) == accession }
        if matches.isEmpty, found.leftOut > 0 {
            throw CLIError(message: "no readable item with accession number \(accession); \(found.leftOut) left out: \(found.note ?? "")", status: .badInput)
        }
        guard let first = matches.first else {
            throw CLIError(message: "no item with accession number \(accession) on today's worklist for \(config.aeTitle) (dexa worklist lists them)", status: .badInput)
        }
        guard matches.count == 1 else {
            throw CLIError(message: "\(matches.count) items with accession number \(accession) on today's worklist: ask the RIS which one is meant", status: .badInput)
        }
        switch WorklistItem.from(first) {
        case .success(let item): return item
        case .failure(let why): throw CLIError(message: why.description, status: .badInput)
        }
    }

    /// exam.new's parameters from `item` (`WorklistItem.registration`).
    static func params(_ item: WorklistItem, ethnicity: String?, referral: String?, operatorName: String?) throws -> ExamCreateParams {
        switch item.registration(ethnicity: ethnicity, referral: referral) {
        case .success(let r): return ExamCreateParams(patient: r.patient, referral: r.referral, operatorName: operatorName, scheduled: r.scheduled)
        case .failure(let why): throw CLIError(message: why.description, status: .badInput)
        }
    }
}
