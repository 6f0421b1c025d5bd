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

    /// Overrides, the history before the latest reset, and cross-calibrations: per device,
    /// surviving a reopening; a corrupt cross-calibration is named.
    @Test func overridesPreviousHistoriesAndCrossCalibrations() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("exams.sqlite")
        let t0 = Date(timeIntervalSince1970: 1_780_000_000)
        do {
            let store = try ExamStore(path: path)
            #expect(try store.qcOverride(device: "DX-1 A") == nil && store.lastQCScan(device: "DX-1 A") == nil)
            #expect(try store.qcPreviousHistory(device: "DX-1 A").isEmpty)
            for k in 0..<3 { _ = try store.addQC(device: "DX-1 A", at: t0.addingTimeInterval(Double(k)), bmdGCm2: ["L1": 0.5], capture: nil, by: "tech") }
            try store.resetQC(device: "DX-1 A", at: t0.addingTimeInterval(10), by: "service", reason: "tube replaced")
            _ = try store.addQC(device: "DX-1 A", at: t0.addingTimeInterval(11), bmdGCm2: ["L1": 0.51], capture: nil, by: "tech")
            try store.addQCOverride(device: "DX-1 A", at: t0.addingTimeInterval(12), by: "svc", reason: "first")
            try store.addQCOverride(device: "DX-1 A", at: t0.addingTimeInterval(13), by: "svc", reason: "second")
            let record = try QualityControl.crossCalibration(
                before: (0..<10).map { QualityControl.Measurement(id: Int64($0), at: t0, bmdGCm2: ["L1": $0 % 2 == 0 ? 0.99 : 1.01]) },
                after: (0..<10).map { QualityControl.Measurement(id: Int64(100 + $0), at: t0, bmdGCm2: ["L1": $0 % 2 == 0 ? 1.0 : 1.02]) })
            try store.saveCrossCalibration(device: "DX-1 A", at: t0.addingTimeInterval(14), record)
        }
        let store = try ExamStore(path: path)
        #expect(try store.qcOverride(device: "DX-1 A") == QualityControl.Override(at: t0.addingTimeInterval(13), by: "svc", reason: "second"))
        #expect(try store.qcOverride(device: "DX-1 B") == nil)
        #expect(try store.lastQCScan(device: "DX-1 A") == t0.addingTimeInterval(11))
        // The three results before the reset; the one after is the current history's.
        #expect(try store.qcPreviousHistory(device: "DX-1 A").map(\.at) == (0..<3).map { t0.addingTimeInterval(Double($0)) })
        let c = try #require(try store.crossCalibration(device: "DX-1 A"))
        #expect(c.at == t0.addingTimeInterval(14) && abs((c.record.regions["L1"]?.differencePercent ?? 0) - 1.0) < 1e-9 && c.record.passes)
        #expect(try store.crossCalibration(device: "DX-1 B") == nil)
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in try db.execute(sql: "UPDATE qc_crosscal SET record = 'not json'") }
        #expect(throws: (any Error).self) { try store.crossCalibration(device: "DX-1 A") }
    }
}
