import DXAcquisition
import DXDecomposition
@testable import DXDicom
@testable import DXDicomService
import DXStore
import DXTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// The DICOM service's queue against Orthanc: an exam's published results become objects in
/// the queue; a PACS that is down holds them (retried with backoff, nothing lost); a service
/// stopped and started again resumes; the PACS back, every object arrives exactly once.
@Suite("DICOM service", .serialized)
struct DicomServiceTests {
    static let example = Result { try ExampleExam.results() }

    /// A store with one exam whose results are published, its scans on disk where the
    /// results say.
    static func storeWithPublishedExam(_ dir: TemporaryDirectory) throws -> (ExamStore, ExamResults) {
        let (store, r) = try storeWithExam(dir)
        try store.publishResults(examID: r.examID, results: r, at: Date(timeIntervalSince1970: 1_796_376_000))
        return (store, r)
    }

    /// A store with one exam (created, not started) and the results it will have, its scans
    /// on disk where the results say.
    static func storeWithExam(_ dir: TemporaryDirectory) throws -> (ExamStore, ExamResults) {
        var (r, scans) = try example.get()
        let store = try ExamStore(path: dir.file("exams.sqlite"))
        let id = try store.createExam(patient: PatientRecord(id: "P-0042", name: "Ada Example", sex: .female, birthDate: "1959-07-01", ethnicity: nil),
                                      referral: "screening", operatorName: "test", plan: Site.standardOrder,
                                      scheduled: ScheduledProcedure(accessionNumber: "ACC-7", studyInstanceUID: "1.2.826.0.1.3680043.10.9.7"),
                                      at: Date(timeIntervalSince1970: 1_796_374_800))
        r.examID = id
        r.createdAt = "2026-12-04T08:58:00Z"
        r.scheduled = ScheduledProcedure(accessionNumber: "ACC-7", studyInstanceUID: "1.2.826.0.1.3680043.10.9.7")
        for i in r.sites.indices {
            guard let scan = scans[r.sites[i].site] else { continue }
            let capture = dir.file("\(r.sites[i].site).dxcap")
            try scan.write(to: DecomposedScan.path(forCapture: capture))
            r.sites[i].capture = capture
        }
        return (store, r)
    }

    /// A clock the test turns: the service's retries wait on it, not on the machine.
    final class TestNow: Sendable {
        private let value = Mutex(Date(timeIntervalSince1970: 1_796_376_000))
        func get() -> Date { value.withLock { $0 } }
        func advance(_ seconds: TimeInterval) { value.withLock { $0 += seconds } }
    }

    static func service(_ store: ExamStore, _ dir: TemporaryDirectory, storage: DicomPeer?, mpps: DicomPeer? = nil, commitment: DicomPeer? = nil,
                        listenPort: UInt16? = nil, uidRoot: String? = nil, now: TestNow) throws -> DicomService {
        var config = DicomConfiguration(stationName: "DX1-TEST", stationIdentity: "test-station")
        config.uidRoot = uidRoot
        config.aeTitle = "DEXA1"
        config.storage = storage
        config.mpps = mpps
        config.commitment = commitment
        config.listenPort = listenPort
        return try DicomService(store: store, config: config, settings: .init(objectDirectory: dir.file("dicom")), now: { now.get() },
                            logger: Logger(label: "test"))
    }

    @Test(.enabled(if: DicomTools.available)) func aPACSDownHoldsTheQueueAndEveryObjectArrivesOnceWhenItIsBack() async throws {
        let dir = TemporaryDirectory("dxsvc")
        let (store, _) = try Self.storeWithPublishedExam(dir)
        let now = TestNow()
        // The PACS's address is known but nothing listens there yet.
        let port = try DicomTools.freePort()
        let peer = DicomPeer(host: "127.0.0.1", port: port, aeTitle: "ORTHANC", connectTimeout: 2)
        var service = try Self.service(store, dir, storage: peer, now: now)
        await service.round()
        var queue = try store.outbox(examID: nil)
        #expect(queue.count == 7, "3 site images, 2 report pages, the results and the dose reports")
        #expect(queue.allSatisfy { $0.state == .pending && $0.attempts == 1 && $0.lastError?.contains("ORTHANC@127.0.0.1") == true })
        #expect(queue.allSatisfy { FileManager.default.fileExists(atPath: $0.path) })
        // Not due again until the backoff has passed: another round sends nothing.
        await service.round()
        #expect(try store.outbox(examID: nil).allSatisfy { $0.attempts == 1 })
        now.advance(11)
        await service.round()
        queue = try store.outbox(examID: nil)
        #expect(queue.allSatisfy { $0.attempts == 2 }, "retried after 10 s")
        #expect(queue.allSatisfy { abs($0.nextAttemptAt.timeIntervalSince(now.get()) - 20) < 1 }, "then 20 s")

        // The service stops and a new one starts (a restart): the queue is in the store.
        service = try Self.service(store, dir, storage: peer, now: now)
        // The PACS comes up on that port.
        let orthanc = try await OrthancServer(dicomPort: port)
        defer { orthanc.stop() }
        now.advance(21)
        await service.round()
        queue = try store.outbox(examID: nil)
        #expect(queue.allSatisfy { $0.state == .sent && $0.attempts == 3 }, "\(queue.map(\.lastError))")
        let stored = try await orthanc.instances()
        #expect(stored.count == 7)
        #expect(Set(queue.map(\.sopInstanceUID)).count == 7)
        #expect(queue.allSatisfy { $0.lastError == nil })
        // Nothing is sent twice: more rounds, later, send nothing.
        now.advance(3600)
        await service.round()
        await service.round()
        #expect(try store.outbox(examID: nil).allSatisfy { $0.attempts == 3 })
        #expect(try await orthanc.newInstances() == 7, "Orthanc stored each object once")
        // Every object in the worklist's study.
        for instance in stored {
            let tags = try await orthanc.tags(ofInstance: instance["ID"] as? String ?? "")
            #expect(tags["AccessionNumber"] as? String == "ACC-7")
            #expect(tags["StudyInstanceUID"] as? String == "1.2.826.0.1.3680043.10.9.7")
        }
        // A service engineer's resend: sent again (the PACS keeps one copy of each).
        #expect(try store.resend(examID: queue[0].examID, objectID: nil, at: now.get()) == 7)
        await service.round()
        #expect(try store.outbox(examID: nil).allSatisfy { $0.state == .sent && $0.attempts == 4 })
        #expect(try await orthanc.instances().count == 7)

        // A correction after they were sent: revision 2's objects, and a rejection note (IHE
        // IOCM, Key Object Selection 113001) naming every object of revision 1, which the
        // PACS holds. dciodvfy finds no error in it; dsrdump reads its references.
        let published = try #require(try store.builtResults(examID: queue[0].examID)).results
        try store.publishResults(examID: queue[0].examID, results: published.results, at: now.get())
        await service.round()
        let second = try store.outbox(examID: queue[0].examID).filter { $0.revision == 2 }
        #expect(second.count == 8 && second.allSatisfy { $0.state == .sent }, "\(second.map { "\($0.name) \($0.state)" })")
        let note = try #require(second.first { $0.name == "rejection" })
        #expect(note.sopClassUID == "1.2.840.10008.5.1.4.1.1.88.59")
        let (errors, warnings) = try DicomTools.verify(note.path)
        #expect(errors.isEmpty, "\(errors)")
        let (status, dump) = try DicomTools.run(DicomTools.dsrdump, ["+Pc", "+Pu", note.path])
        #expect(status == 0 && dump.contains("Rejected for Quality Reasons"), "\(dump)")
        for o in queue { #expect(dump.contains(o.sopInstanceUID), "\(o.name) of revision 1 rejected") }
        #expect(try await orthanc.instances().count == 15, "revision 1, revision 2 and the note")
        print("rejection note: dciodvfy warnings \(warnings)")
        if let out = ProcessInfo.processInfo.environment["DEXA_DICOM_EXAMPLE"] {
            try? FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try dump.write(toFile: out + "/dicom-rejection-note.txt", atomically: true, encoding: .utf8)
        }
    }

    @Test func waitsDoubleUpToTheLongest() throws {
        let dir = TemporaryDirectory("dxsvc")
        let store = try ExamStore(path: dir.file("exams.sqlite"))
        let service = try Self.service(store, dir, storage: nil, now: TestNow())
        #expect([1, 2, 3, 4, 7, 20].map { service.wait(afterFailures: $0) } == [10, 20, 40, 80, 600, 600])
    }

    @Test func resultsWhoseScansAreGoneAreSaidOnceAndNotRetried() async throws {
        let dir = TemporaryDirectory("dxsvc")
        let (store, r) = try Self.storeWithPublishedExam(dir)
        for s in r.sites { if let c = s.capture { try? FileManager.default.removeItem(atPath: DecomposedScan.path(forCapture: c)) } }
        let service = try Self.service(store, dir, storage: nil, now: TestNow())
        await service.round()
        #expect(try store.outbox(examID: nil).isEmpty)
        #expect(try store.resultsToBuild().isEmpty, "marked as failed, not tried every round")
        // Said in the queue, which is stuck until someone looks; a resend tries the build again.
        let unbuilt = try store.unbuiltResults(examID: nil)
        #expect(unbuilt.count == 1 && unbuilt[0].error?.contains("cannot be read") == true, "\(unbuilt)")
        #expect(DicomQueueStatus(objects: [], unbuilt: unbuilt, now: Date(), alertAfterSeconds: 1800).stuck)
        #expect(try store.resend(examID: r.examID, objectID: nil, at: Date()) == 1)
        #expect(try store.resultsToBuild().count == 1)
    }

    /// A correction's revision replaces what the first revision still had waiting; its objects
    /// are new instances; without a storage peer objects are kept for export, not queued.
    @Test func aCorrectionSupersedesWhatWasNotSentAndNoPeerKeepsObjectsLocal() async throws {
        let dir = TemporaryDirectory("dxsvc")
        let (store, r) = try Self.storeWithPublishedExam(dir)
        let now = TestNow()
        let port = try DicomTools.freePort()
        let service = try Self.service(store, dir, storage: DicomPeer(host: "127.0.0.1", port: port, aeTitle: "PACS", connectTimeout: 1), now: now)
        await service.round()
        try store.publishResults(examID: r.examID, results: r, at: now.get())
        await service.round()
        let queue = try store.outbox(examID: r.examID)
        #expect(queue.filter { $0.revision == 1 }.allSatisfy { $0.state == .superseded }, "\(queue.map { "\($0.revision) \($0.state)" })")
        #expect(queue.filter { $0.revision == 2 }.count == 7 && queue.filter { $0.revision == 2 }.allSatisfy { $0.state == .pending })
        #expect(Set(queue.map(\.sopInstanceUID)).count == 14, "a revision's objects are new instances")
        let second = try DicomFile.read(try #require(queue.first { $0.revision == 2 }?.path))
        #expect(second.text(.instanceNumber) == "101")
        #expect(second.text(.imageComments)?.contains("Revision 2") == true)

        let dir2 = TemporaryDirectory("dxsvc")
        let (store2, _) = try Self.storeWithPublishedExam(dir2)
        try await Self.service(store2, dir2, storage: nil, now: now).round()
        let local = try store2.outbox(examID: nil)
        #expect(local.count == 7 && local.allSatisfy { $0.state == .local })
        // No RIS was told of the exam: no object refers to a procedure step (the reports'
        // sequence, type 2, is there and empty).
        for o in local {
            #expect(try DicomFile.read(o.path).items(.referencedPerformedProcedureStepSequence).isEmpty, "\(o.name)")
        }
        #expect(!DicomQueueStatus(objects: local, now: now.get().addingTimeInterval(86_400), alertAfterSeconds: 1800).stuck)
    }

    /// The UID root changed between two revisions of an exam (a hospital registers its own
    /// root): the second revision stays in the first one's study and series, its instances
    /// under the root the exam was first named with.
    @Test func aChangedUIDRootMovesNoRevisionIntoAnotherStudy() async throws {
        let dir = TemporaryDirectory("dxsvc")
        let (store, r) = try Self.storeWithPublishedExam(dir)
        let now = TestNow()
        try await Self.service(store, dir, storage: nil, uidRoot: "1.2.826.0.1.3680043.10.1", now: now).round()
        try store.publishResults(examID: r.examID, results: r, at: now.get())
        try await Self.service(store, dir, storage: nil, uidRoot: "1.2.826.0.1.3680043.10.2", now: now).round()
        let objects = try store.outbox(examID: r.examID)
        let first = objects.filter { $0.revision == 1 }, second = objects.filter { $0.revision == 2 }
        #expect(first.count == 7 && second.count == 7)
        for o in second {
            let was = try #require(first.first { $0.name == o.name }, "\(o.name)")
            let (a, b) = (try DicomFile.read(was.path), try DicomFile.read(o.path))
            #expect(b.text(.seriesInstanceUID) == a.text(.seriesInstanceUID), "\(o.name)")
            #expect(b.text(.studyInstanceUID) == a.text(.studyInstanceUID))
            #expect(o.sopInstanceUID.hasPrefix("1.2.826.0.1.3680043.10.1.") && o.sopInstanceUID != was.sopInstanceUID, "\(o.sopInstanceUID)")
        }
    }

    /// A file that is gone (a power cut before it reached the disk, a cleaned folder) is built
    /// again from its results before it is sent: the same UIDs, nothing blocked.
    @Test(.enabled(if: DicomTools.available)) func aMissingFileIsBuiltAgainAndSent() async throws {
        let dir = TemporaryDirectory("dxsvc")
        let (store, _) = try Self.storeWithPublishedExam(dir)
        let orthanc = try await OrthancServer()
        defer { orthanc.stop() }
        let now = TestNow()
        let service = try Self.service(store, dir, storage: DicomPeer(host: "127.0.0.1", port: orthanc.dicomPort, aeTitle: orthanc.aeTitle), now: now)
        await service.build()
        let queued = try store.outbox(examID: nil)
        try FileManager.default.removeItem(atPath: queued[0].path)
        await service.send()
        let after = try store.outbox(examID: nil)
        #expect(after.allSatisfy { $0.state == .sent }, "\(after.map { "\($0.name) \($0.state) \($0.lastError ?? "")" })")
        #expect(Set(try await orthanc.instances().compactMap { $0["ID"] as? String }).count == 7)
    }

    // MARK: Procedure steps (MPPS)

    /// The example's exposures: every attempt that exposed, a rejected one included.
    static let exposures: [ExamResults.Exposure] = [
        .init(site: "ap_spine", attempt: 1, status: "completed", startedAt: "2026-12-04T09:01:00Z", endedAt: "2026-12-04T09:05:00Z",
              dose: ScanDose(scans: 5, exposureMs: 221_700, dapMGyCm2: 6.41), tubeCurrentUA: 400),
        .init(site: "left_hip", attempt: 1, status: "motion", startedAt: "2026-12-04T09:07:00Z", endedAt: "2026-12-04T09:08:00Z",
              dose: ScanDose(scans: 2, exposureMs: 40_000, dapMGyCm2: 0.5), tubeCurrentUA: 333),
        .init(site: "left_hip", attempt: 2, status: "completed", startedAt: "2026-12-04T09:09:00Z", endedAt: "2026-12-04T09:12:00Z",
              dose: ScanDose(scans: 5, exposureMs: 181_940, dapMGyCm2: 2.24), tubeCurrentUA: 333),
    ]

    /// The RIS (pynetdicom's SCP, which checks each message as PS3.4 F.7.2 asks) hears the exam
    /// start (N-CREATE, IN PROGRESS, the worklist's order) and end (one N-SET: COMPLETED, each
    /// series with its objects, the dose of every exposure); nothing more after that.
    @Test(.enabled(if: MPPSServer.available)) func theRISHearsTheExamStartAndEndWithItsSeriesAndDose() async throws {
        let dir = TemporaryDirectory("dxsvc")
        var (store, r) = try Self.storeWithExam(dir)
        let ris = try await MPPSServer()
        defer { ris.stop() }
        let now = TestNow()
        let service = try Self.service(store, dir, storage: nil, mpps: DicomPeer(host: "127.0.0.1", port: ris.port, aeTitle: ris.aeTitle), now: now)
        await service.round()
        #expect(ris.messages.isEmpty, "not started: nothing to say")
        try store.setState(examID: r.examID, state: .inProgress, at: now.get().addingTimeInterval(60))
        now.advance(61)
        await service.round()
        let step = try #require(try store.performedSteps(examID: r.examID).first)
        #expect(ris.messages == ["N-CREATE \(step.sopInstanceUID) 0x0000"], "\(ris.log)")
        #expect(step.state == .inProgress)
        let created = try DicomFile.read(try #require(ris.file(step.sopInstanceUID, "ncreate")))
        #expect(created.text(.performedProcedureStepStatus) == "IN PROGRESS")
        #expect(created.text(.patientID) == "P-0042")
        #expect(created.text(.modality) == "BMD")
        #expect(created.text(.performedStationAETitle) == "DEXA1")
        let scheduled = try #require(created.items(.scheduledStepAttributesSequence).first)
        #expect(scheduled.text(.studyInstanceUID) == "1.2.826.0.1.3680043.10.9.7")
        #expect(scheduled.text(.accessionNumber) == "ACC-7")
        // In progress: more rounds say nothing.
        await service.round()
        #expect(ris.messages.count == 1)

        // The exam ends; its results are published and built: the N-SET.
        r.exposures = Self.exposures
        r.operatorName = "Tina Tech"
        try store.setState(examID: r.examID, state: .completed, at: now.get().addingTimeInterval(600))
        try store.publishResults(examID: r.examID, results: r, at: now.get().addingTimeInterval(600))
        now.advance(601)
        await service.round()
        #expect(ris.messages == ["N-CREATE \(step.sopInstanceUID) 0x0000", "N-SET \(step.sopInstanceUID) 0x0000"], "\(ris.log)")
        #expect(try store.performedSteps(examID: r.examID).first?.state == .completed)
        let merged = try DicomFile.read(try #require(ris.file(step.sopInstanceUID, "merged")))
        #expect(merged.text(.performedProcedureStepStatus) == "COMPLETED")
        #expect(merged.text(.performedProcedureStepEndDate)?.count == 8)
        let series = merged.items(.performedSeriesSequence)
        #expect(series.count == 6, "AP spine, left hip, lateral spine, the report pages, the results and the dose reports")
        let objects = try store.outbox(examID: r.examID)
        let images = series.flatMap { $0.items(.referencedImageSequence) }.compactMap { $0.text(.referencedSOPInstanceUID) }
        let others = series.flatMap { $0.items(.referencedNonImageCompositeSOPInstanceSequence) }.compactMap { $0.text(.referencedSOPInstanceUID) }
        #expect(Set(images + others) == Set(objects.map(\.sopInstanceUID)), "every object of the exam, each once")
        #expect(others.count == 2, "the two reports")
        // Each object refers to the step the RIS heard of (Referenced Performed Procedure Step
        // Sequence: General Series of the images, SR Document General of the reports).
        for o in objects {
            let reference = try #require(try DicomFile.read(o.path).items(.referencedPerformedProcedureStepSequence).first, "\(o.name)")
            #expect(reference.text(.referencedSOPClassUID) == "1.2.840.10008.3.1.2.3.3" && reference.text(.referencedSOPInstanceUID) == step.sopInstanceUID,
                    "\(o.name)")
        }
        #expect(series.allSatisfy { $0.text(.operatorsName) == "Tech^Tina" && $0.text(.protocolName) != nil })
        // The dose: the exam's DAP in dGy·cm², each exposure's time and current.
        #expect(merged.text(.imageAndFluoroscopyAreaDoseProduct) == String(format: "%.5f", r.dose.dapMGyCm2 / 100), "8.65 mGy·cm² is 0.0865 dGy·cm²")
        let doses = merged.items(.exposureDoseSequence)
        #expect(doses.map { $0.text(.exposureTime) } == ["221700", "40000", "181940"])
        #expect(doses.map { $0.text(.xRayTubeCurrentInMicroamperes) } == ["400", "333", "333"])
        #expect(doses[1].text(.commentsOnRadiationDose)?.contains("DAP 0.50 mGy*cm2") == true)
        #expect(created.text(.specificCharacterSet) == "ISO_IR 192", "UTF-8 from the N-CREATE on: the N-SET's words may need it")
        // Ended: later rounds, and a correction's new revision, say nothing more.
        try store.publishResults(examID: r.examID, results: r, at: now.get())
        now.advance(3600)
        await service.round()
        #expect(ris.messages.count == 2)
    }

    /// A RIS that is down holds the step (retried with the queue's backoff, said in the queue);
    /// an exam aborted meanwhile: when the RIS is back it hears the start, then the end as
    /// DISCONTINUED with the reason coded (CID 9301) and in words.
    @Test(.enabled(if: MPPSServer.available)) func aRISDownIsRetriedAndAnAbortedExamIsDiscontinuedWithItsReason() async throws {
        let dir = TemporaryDirectory("dxsvc")
        var (store, r) = try Self.storeWithExam(dir)
        let now = TestNow()
        let port = try DicomTools.freePort()
        let service = try Self.service(store, dir, storage: nil, mpps: DicomPeer(host: "127.0.0.1", port: port, aeTitle: "MPPSSCP", connectTimeout: 2), now: now)
        await service.round()
        try store.setState(examID: r.examID, state: .inProgress, at: now.get().addingTimeInterval(1))
        now.advance(2)
        await service.round()
        var step = try #require(try store.performedSteps(examID: r.examID).first)
        #expect(step.state == .create && step.attempts == 1 && step.lastError?.contains("N-CREATE") == true, "\(step)")
        #expect(abs(step.nextAttemptAt.timeIntervalSince(now.get()) - 10) < 1, "tried again after 10 s")
        let status = DicomQueueStatus(objects: [], steps: [step], now: now.get().addingTimeInterval(1801), alertAfterSeconds: 1800)
        #expect(status.stuck, "a step unanswered longer than the alert time")
        // The exam is aborted while the RIS is down.
        r.state = .aborted
        // The cause the technologist chose, not the words, is the code (these words alone
        // would read as "unspecified").
        r.abortReason = "the table would not move"
        r.abortCause = .equipmentFailure
        r.exposures = Array(Self.exposures.prefix(1))
        try store.setState(examID: r.examID, state: .aborted, at: now.get())
        try store.publishResults(examID: r.examID, results: r, at: now.get())
        let ris = try await MPPSServer(port: port)
        defer { ris.stop() }
        now.advance(11)
        await service.round()
        await service.round()
        step = try #require(try store.performedSteps(examID: r.examID).first)
        #expect(ris.messages == ["N-CREATE \(step.sopInstanceUID) 0x0000", "N-SET \(step.sopInstanceUID) 0x0000"], "\(ris.log)")
        #expect(step.state == .discontinued)
        let merged = try DicomFile.read(try #require(ris.file(step.sopInstanceUID, "merged")))
        #expect(merged.text(.performedProcedureStepStatus) == "DISCONTINUED")
        let reason = try #require(merged.items(.performedProcedureStepDiscontinuationReasonCodeSequence).first)
        #expect(reason.text(.codeValue) == "110501" && reason.text(.codingSchemeDesignator) == "DCM" && reason.text(.codeMeaning) == "Equipment failure")
        #expect(merged.text(.commentsOnThePerformedProcedureStep) == "Exam aborted: the table would not move")
    }

    /// The cause chosen at the abort is the step's code (CID 9301), whatever the words say;
    /// every cause has its own code.
    @Test func anAbortsCauseIsItsCode() {
        let codes: [AbortCause: String] = [.equipmentFailure: "110501", .patientRefused: "110505", .patientCondition: "110515",
                                           .wrongWorklistEntry: "110514", .other: "110513"]
        #expect(Set(codes.keys) == Set(AbortCause.allCases))
        for (cause, value) in codes {
            #expect(ExamObjects.discontinuation(cause, words: "patient refused, device fault").value == value, "\(cause)")
        }
        #expect(ExamObjects.discontinuation(nil, words: "patient refused").value == "110505", "no cause kept: the words")
    }

    /// Results from before the cause was kept: the technologist's words chosen to a
    /// discontinuation code (CID 9301).
    @Test func anAbortsWordsChooseItsCode() {
        #expect(ExamObjects.discontinuation("device fault: tube arc").value == "110501")
        #expect(ExamObjects.discontinuation("patient refused to continue").value == "110505")
        #expect(ExamObjects.discontinuation("wrong worklist item chosen").value == "110514")
        #expect(ExamObjects.discontinuation("patient in pain, could not lie still").value == "110515")
        #expect(ExamObjects.discontinuation("stopped").value == "110513")
        #expect(ExamObjects.discontinuation(nil).value == "110513")
    }

    // MARK: Storage commitment

    /// A listening port another program holds: the service says so and ends (systemd starts
    /// it again), instead of waiting for commitments that can never arrive.
    @Test func aListenerWhosePortIsTakenEndsTheService() async throws {
        let dir = TemporaryDirectory("dxsvc")
        let (store, _) = try Self.storeWithPublishedExam(dir)
        let port = try DicomTools.freePort()
        let holder = try CommitmentListener(aeTitle: "OTHER", port: port)
        holder.start()
        defer { holder.stop() }
        try await eventually("the other listener listening", seconds: 10) { DicomTools.isListening(port: port) }
        let now = TestNow()
        let service = try Self.service(store, dir, storage: nil, commitment: DicomPeer(host: "127.0.0.1", port: 1, aeTitle: "PACS"),
                                       listenPort: port, now: now)
        let run = Task { try await service.run() }
        let ended = Task { try await Task.sleep(for: .seconds(30)); run.cancel() }
        defer { ended.cancel() }
        do {
            try await run.value
            Issue.record("the service ran on without its listener")
        } catch let e as DicomFailure {
            #expect(e.description.contains("port \(port)"), "\(e)")
        }
        #expect(holder.failure == nil, "the holder still listens")
    }

    /// Orthanc commits what it holds: asked after the objects are sent (N-ACTION), it reports
    /// on an association of its own to the service's listener, and the store marks each
    /// object committed. An object the PACS lost is reported failed, sent again and then
    /// committed.
    @Test(.enabled(if: DicomTools.available)) func thePACSCommitsWhatItHoldsAndALostObjectIsSentAgain() async throws {
        let dir = TemporaryDirectory("dxsvc")
        let (store, _) = try Self.storeWithPublishedExam(dir)
        let listenPort = try DicomTools.freePort()
        let orthanc = try await OrthancServer(modality: ("DEXA1", listenPort))
        defer { orthanc.stop() }
        let pacs = DicomPeer(host: "127.0.0.1", port: orthanc.dicomPort, aeTitle: orthanc.aeTitle)
        let now = TestNow()
        // First without commitment: sent, not committed. Then the PACS loses one object.
        try await Self.service(store, dir, storage: pacs, now: now).round()
        var queue = try store.outbox(examID: nil)
        #expect(queue.count == 7 && queue.allSatisfy { $0.state == .sent && $0.committedAt == nil && $0.commitmentRequestedAt == nil })
        let lost = queue[2]
        let held = try await orthanc.instances()
        let lostID = try #require(held.first { ($0["MainDicomTags"] as? [String: Any])?["SOPInstanceUID"] as? String == lost.sopInstanceUID }?["ID"] as? String)
        try await orthanc.delete("/instances/\(lostID)")

        let service = try Self.service(store, dir, storage: pacs, commitment: pacs, listenPort: listenPort, now: now)
        service.startListening()
        defer { service.stopListening() }
        // The listener answers a C-ECHO (DCMTK's echoscu) as this station.
        var echo = (status: Int32(-1), output: "")
        for _ in 0..<50 where echo.status != 0 {
            try await Task.sleep(for: .milliseconds(100))
            echo = try DicomTools.run("/usr/bin/echoscu", ["-aec", "DEXA1", "127.0.0.1", String(listenPort)])
        }
        #expect(echo.status == 0, "\(echo.output) \(service.listener?.drainProblems() ?? [])")
        // Orthanc answers in a job of its own: the rounds go on until it has (20 s at most).
        func until(_ done: ([OutboxObject]) -> Bool) async throws -> [OutboxObject] {
            let deadline = Date().addingTimeInterval(20)
            var q = try store.outbox(examID: nil)
            while !done(q) && Date() < deadline {
                try await Task.sleep(for: .milliseconds(200))
                await service.round()
                q = try store.outbox(examID: nil)
            }
            return q
        }
        await service.round()
        queue = try await until { q in q.contains { $0.commitmentError != nil } }
        let refused = try #require(queue.first { $0.id == lost.id })
        #expect(refused.commitmentError?.contains("0x0112") == true, "no such object instance: \(String(describing: refused.commitmentError)) \(orthanc.log.suffix(1500))")
        #expect(queue.filter { $0.id != lost.id }.allSatisfy { $0.committedAt != nil }, "the six it holds are committed")
        // The lost object is sent again, asked again, and committed.
        queue = try await until { q in q.allSatisfy { $0.committedAt != nil } }
        #expect(queue.allSatisfy { $0.state == .sent && $0.committedAt != nil }, "\(queue.map { "\($0.name) \($0.state) \($0.commitmentError ?? "")" })")
        #expect(try await orthanc.instances().count == 7)
        let status = DicomQueueStatus(objects: queue, now: now.get(), alertAfterSeconds: 1800)
        #expect(status.committed == 7 && !status.stuck)
    }

    /// A commitment SCP that reports proposing the SCP role for itself (pynetdicom), as PS3.4
    /// J.3.3.1.3 describes: accepted, every object committed.
    @Test(.enabled(if: MPPSServer.available)) func aReportProposingTheSCPRoleIsAccepted() async throws {
        let dir = TemporaryDirectory("dxsvc")
        let (store, _) = try Self.storeWithPublishedExam(dir)
        let orthanc = try await OrthancServer()
        defer { orthanc.stop() }
        let listenPort = try DicomTools.freePort()
        let scp = try await CommitmentServer(station: ("DEXA1", listenPort))
        defer { scp.stop() }
        let now = TestNow()
        let service = try Self.service(store, dir, storage: DicomPeer(host: "127.0.0.1", port: orthanc.dicomPort, aeTitle: orthanc.aeTitle),
                                       commitment: DicomPeer(host: "127.0.0.1", port: scp.port, aeTitle: scp.aeTitle), listenPort: listenPort, now: now)
        service.startListening()
        defer { service.stopListening() }
        await service.round()
        let deadline = Date().addingTimeInterval(20)
        var queue = try store.outbox(examID: nil)
        while !queue.allSatisfy({ $0.committedAt != nil }) && Date() < deadline {
            try await Task.sleep(for: .milliseconds(200))
            await service.round()
            queue = try store.outbox(examID: nil)
        }
        #expect(queue.count == 7 && queue.allSatisfy { $0.committedAt != nil }, "\(scp.log) \(service.listener?.drainProblems() ?? [])")
        // The peer writes its report's line when our answer reaches it, which can come after our
        // side has recorded the commitment (a CI rehearsal under load read one line of two).
        let reported = Date().addingTimeInterval(10)
        while scp.messages.count < 2 && Date() < reported { try await Task.sleep(for: .milliseconds(100)) }
        #expect(scp.messages.count == 2 && scp.messages.last?.hasSuffix(" 0x0000") == true, "\(scp.messages)")
    }

    /// A commitment result is read as PS3.4 J.3.3.1.2 says; one that is not is refused.
    @Test func commitmentReportsAreReadOrRefused() throws {
        var ds = DicomDataset()
        ds.set(StorageCommitment.transactionUID, "2.25.1")
        var ok = DicomDataset()
        ok.set(.referencedSOPClassUID, SOPClass.secondaryCapture)
        ok.set(.referencedSOPInstanceUID, "2.25.10")
        ds.set(.referencedSOPSequence, items: [ok])
        var bad = DicomDataset()
        bad.set(.referencedSOPClassUID, SOPClass.secondaryCapture)
        bad.set(.referencedSOPInstanceUID, "2.25.11")
        bad.set(StorageCommitment.failureReason, "274")
        ds.set(StorageCommitment.failedSOPSequence, items: [bad])
        let report = try CommitmentReport(callingAETitle: "PACS", eventType: 2, dataset: ds)
        #expect(report.committed == ["2.25.10"] && report.failed == [.init(sopInstanceUID: "2.25.11", reason: 0x0112)])
        #expect(throws: DicomFailure.self) { try CommitmentReport(callingAETitle: "PACS", eventType: 3, dataset: ds) }
        #expect(throws: DicomFailure.self) { try CommitmentReport(callingAETitle: "PACS", eventType: 1, dataset: DicomDataset()) }
        var none = ds
        none[StorageCommitment.failedSOPSequence] = nil
        #expect(throws: DicomFailure.self) { try CommitmentReport(callingAETitle: "PACS", eventType: 2, dataset: none) }
        #expect(StorageCommitment.words(reason: 0x0112) == "0x0112: no such object instance")
    }
}
