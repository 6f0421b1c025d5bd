import DXAcquisition
import DXStore
import DXTestSupport
import Foundation
import GRDB
import Testing

/// The exam database's failures in words: a lock another program holds, a database that
/// cannot be opened. A refused write changes nothing.
@Suite("Exam store failures")
struct StoreFailureTests {
    @Test func aLockHeldByAnotherProgramIsSaidAndChangesNothing() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("exams.sqlite")
        let store = try ExamStore(path: path)
        let patient = PatientRecord(id: "P-1", name: "Test Patient", sex: .female, birthDate: "1950-01-02")
        _ = try store.createExam(patient: patient, referral: "screening", operatorName: "tech1", plan: Site.standardOrder, at: Date())

        // Another connection (another program) takes the write lock and keeps it.
        var config = Configuration()
        config.allowsUnsafeTransactions = true
        let other = try DatabaseQueue(path: path, configuration: config)
        try other.inDatabase { try $0.execute(sql: "BEGIN EXCLUSIVE") }
        let started = Date()
        do {
            _ = try store.createExam(patient: patient, referral: "screening", operatorName: "tech1", plan: Site.standardOrder, at: Date())
            Issue.record("a write went through another program's exclusive lock")
        } catch let e as StoreFailure {
            #expect(e.kind == .locked)
            #expect(e.description.contains("locked by another program") && e.description.contains(path), "\(e)")
        }
        // It waited for the lock (the busy timeout), not for ever.
        #expect(Date().timeIntervalSince(started) >= ExamStore.busyTimeout * 0.9)
        // Reads go on (WAL), and the refused write left nothing.
        #expect(try store.list(limit: 10).count == 1)
        try other.inDatabase { try $0.execute(sql: "COMMIT") }
        _ = try store.createExam(patient: patient, referral: "screening", operatorName: "tech1", plan: Site.standardOrder, at: Date())
        #expect(try store.list(limit: 10).count == 2)
    }

    @Test func aDatabaseThatCannotBeOpenedIsSaid() throws {
        let dir = TemporaryDirectory()
        // A directory where the file should be.
        let path = dir.file("exams.sqlite")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        #expect { _ = try ExamStore(path: path) } throws: { error in
            guard let e = error as? StoreFailure else { return false }
            return e.description.contains(path) && [.cannotOpen, .io, .other].contains(e.kind)
        }
    }
}
