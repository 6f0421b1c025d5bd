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
        try store.publishResults(examID: id, results: r, at: Date(timeIntervalSince1970: 1_796_376_000))
        return (store, r)
    }

    /// A clock the test turns: the service's retries wait on it, not on the machine.
    final class TestNow: Sendable {
        private let value = Mutex(Date(timeIntervalSince1970: 1_796_376_000))
        func get() -> Date { value.withLock { $0 } }
        func advance(_ seconds: TimeInterval) { value.withLock { $0 += seconds } }
    }

    static func service(_ store: ExamStore, _ dir: TemporaryDirectory, storage: DicomPeer?, now: TestNow) -> DicomService {
        var config = DicomConfiguration(stationName: "DX1-TEST", stationIdentity: "test-station")
        config.aeTitle = "DEXA1"
        config.storage = storage
        return DicomService(store: store, config: config, settings: .init(objectDirectory: dir.file("dicom")), now: { now.get() },
                            logger: Logger(label: "test"))
    }

    @Test(.enabled(if: DicomTools.available)) func aPACSDownHoldsTheQueueAndEveryObjectArrivesOnceWhenItIsBack() async throws {
        let dir = TemporaryDirectory("dxsvc")
        let (store, _) = try Self.storeWithPublishedExam(dir)
        let now = TestNow()
        // The PACS's address is known but nothing listens there yet.
        let port = try DicomTools.freePort()
        let peer = DicomPeer(host: "127.0.0.1", port: port, aeTitle: "ORTHANC", connectTimeout: 2)
        var service = Self.service(store, dir, storage: peer, now: now)
        await service.round()
        var queue = try store.outbox(examID: nil)
        #expect(queue.count == 5, "3 site images and 2 report pages")
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
        service = Self.service(store, dir, storage: peer, now: now)
        // The PACS comes up on that port.
        let orthanc = try await OrthancServer(dicomPort: port)
        defer { orthanc.stop() }
        now.advance(21)
        await service.round()
        queue = try store.outbox(examID: nil)
        #expect(queue.allSatisfy { $0.state == .sent && $0.attempts == 3 }, "\(queue.map(\.lastError))")
        let stored = try await orthanc.instances()
        #expect(stored.count == 5)
        #expect(Set(queue.map(\.sopInstanceUID)).count == 5)
        #expect(queue.allSatisfy { $0.lastError == nil })
        // Nothing is sent twice: more rounds, later, send nothing.
        now.advance(3600)
        await service.round()
        await service.round()
        #expect(try store.outbox(examID: nil).allSatisfy { $0.attempts == 3 })
        #expect(try await orthanc.newInstances() == 5, "Orthanc stored each object once")
        // Every object in the worklist's study.
        for instance in stored {
            let tags = try await orthanc.tags(ofInstance: instance["ID"] as? String ?? "")
            #expect(tags["AccessionNumber"] as? String == "ACC-7")
            #expect(tags["StudyInstanceUID"] as? String == "1.2.826.0.1.3680043.10.9.7")
        }
        // A service engineer's resend: sent again (the PACS keeps one copy of each).
        #expect(try store.resend(examID: queue[0].examID, objectID: nil, at: now.get()) == 5)
        await service.round()
        #expect(try store.outbox(examID: nil).allSatisfy { $0.state == .sent && $0.attempts == 4 })
        #expect(try await orthanc.instances().count == 5)
    }

    @Test func waitsDoubleUpToTheLongest() throws {
        let dir = TemporaryDirectory("dxsvc")
        let store = try ExamStore(path: dir.file("exams.sqlite"))
        let service = Self.service(store, dir, storage: nil, now: TestNow())
        #expect([1, 2, 3, 4, 7, 20].map { service.wait(afterFailures: $0) } == [10, 20, 40, 80, 600, 600])
    }

    @Test func resultsWhoseScansAreGoneAreSaidOnceAndNotRetried() async throws {
        let dir = TemporaryDirectory("dxsvc")
        let (store, r) = try Self.storeWithPublishedExam(dir)
        for s in r.sites { if let c = s.capture { try? FileManager.default.removeItem(atPath: DecomposedScan.path(forCapture: c)) } }
        let service = Self.service(store, dir, storage: nil, now: TestNow())
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
        let service = Self.service(store, dir, storage: DicomPeer(host: "127.0.0.1", port: port, aeTitle: "PACS", connectTimeout: 1), now: now)
        await service.round()
        try store.publishResults(examID: r.examID, results: r, at: now.get())
        await service.round()
        let queue = try store.outbox(examID: r.examID)
        #expect(queue.filter { $0.revision == 1 }.allSatisfy { $0.state == .superseded }, "\(queue.map { "\($0.revision) \($0.state)" })")
        #expect(queue.filter { $0.revision == 2 }.count == 5 && queue.filter { $0.revision == 2 }.allSatisfy { $0.state == .pending })
        #expect(Set(queue.map(\.sopInstanceUID)).count == 10, "a revision's objects are new instances")
        let second = try DicomFile.read(try #require(queue.first { $0.revision == 2 }?.path))
        #expect(second.text(.instanceNumber) == "101")
        #expect(second.text(.imageComments)?.contains("Revision 2") == true)

        let dir2 = TemporaryDirectory("dxsvc")
        let (store2, _) = try Self.storeWithPublishedExam(dir2)
        await Self.service(store2, dir2, storage: nil, now: now).round()
        let local = try store2.outbox(examID: nil)
        #expect(local.count == 5 && local.allSatisfy { $0.state == .local })
        #expect(!DicomQueueStatus(objects: local, now: now.get().addingTimeInterval(86_400), alertAfterSeconds: 1800).stuck)
    }

    /// A file that is gone (a power cut before it reached the disk, a cleaned folder) is built
    /// again from its results before it is sent: the same UIDs, nothing blocked.
    @Test(.enabled(if: DicomTools.available)) func aMissingFileIsBuiltAgainAndSent() async throws {
        let dir = TemporaryDirectory("dxsvc")
        let (store, _) = try Self.storeWithPublishedExam(dir)
        let orthanc = try await OrthancServer()
        defer { orthanc.stop() }
        let now = TestNow()
        let service = Self.service(store, dir, storage: DicomPeer(host: "127.0.0.1", port: orthanc.dicomPort, aeTitle: orthanc.aeTitle), now: now)
        await service.build()
        let queued = try store.outbox(examID: nil)
        try FileManager.default.removeItem(atPath: queued[0].path)
        await service.send()
        let after = try store.outbox(examID: nil)
        #expect(after.allSatisfy { $0.state == .sent }, "\(after.map { "\($0.name) \($0.state) \($0.lastError ?? "")" })")
        #expect(Set(try await orthanc.instances().compactMap { $0["ID"] as? String }).count == 5)
    }
}
