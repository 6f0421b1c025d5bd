import DXAcquisition
import DXClinical
import DXStore
import DXTestSupport
import Foundation
import GRDB
import Testing

/// The QC history as stored: per device, since its latest reset, survives reopening; a row
/// that cannot be read is an error naming it, never skipped.
@Suite("QC history in the store")
struct QCStoreTests {
    @Test func historySinceTheLatestResetPerDevice() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("exams.sqlite")
        let t0 = Date(timeIntervalSince1970: 1_780_000_000)
        do {
            let store = try ExamStore(path: path)
            _ = try store.addQC(device: "DX-1 A", at: t0, bmdGCm2: ["L1": 0.5], capture: "/c/1.dxcap", by: "tech")
            _ = try store.addQC(device: "DX-1 B", at: t0.addingTimeInterval(10), bmdGCm2: ["L1": 0.51], capture: nil, by: "tech")
            try store.resetQC(device: "DX-1 A", at: t0.addingTimeInterval(20), by: "service", reason: "recalibrated")
            _ = try store.addQC(device: "DX-1 A", at: t0.addingTimeInterval(30), bmdGCm2: ["L1": 0.502], capture: nil, by: "tech")
        }
        let store = try ExamStore(path: path)
        let a = try store.qcHistory(device: "DX-1 A")
        #expect(a.measurements.map(\.bmdGCm2) == [["L1": 0.502]])
        #expect(a.reset == QCHistory.Reset(at: t0.addingTimeInterval(20), by: "service", reason: "recalibrated"))
        let b = try store.qcHistory(device: "DX-1 B")
        #expect(b.measurements.count == 1 && b.reset == nil)
        #expect(try store.qcHistory(device: "DX-1 C").measurements.isEmpty)
    }

    @Test func aCorruptRowIsNamed() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("exams.sqlite")
        let store = try ExamStore(path: path)
        _ = try store.addQC(device: "DX-1 A", at: Date(), bmdGCm2: ["L1": 0.5], capture: nil, by: "tech")
        let id = try store.addQC(device: "DX-1 A", at: Date(), bmdGCm2: ["L1": 0.5], capture: nil, by: "tech")
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in try db.execute(sql: "UPDATE qc SET bmd = ? WHERE id = ?", arguments: ["{\"L1\": \"half\"}", id]) }
        do {
            _ = try store.qcHistory(device: "DX-1 A")
            Issue.record("a corrupt row was read")
        } catch {
            #expect("\(error)".contains("QC result \(id) of DX-1 A cannot be read"), "\(error)")
        }
    }
}
