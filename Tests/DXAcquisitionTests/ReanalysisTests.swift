@testable import DXAcquisition
import DXAnalysis
import DXDecomposition
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// `dexa reanalyze`'s pairing of captures with calibrations, and what it reads (issue 18). The
/// batch itself runs through the `dexa` binary (`AnalyzeTests`).
@Suite("Re-analysis of many captures")
struct ReanalysisTests {
    static func header(serial: String = "DX1-000123", at seconds: Double, scan: UInt32, calibration: Bool) -> CaptureHeader {
        var info = SimulatorConfiguration.standardInfo
        info.serial = serial
        let scans = [CaptureScan(scanID: scan - 2, role: .dark), CaptureScan(scanID: scan - 1, role: .air),
                     CaptureScan(scanID: scan, role: calibration ? .calibration : .patient, region: calibration ? nil : .apSpine)]
        return CaptureHeader(device: info, created: Date(timeIntervalSince1970: 1_780_000_000 + seconds), scans: scans)
    }

    @Test func eachCaptureGetsItsUnitsCalibrationsBeforeItNewestFirst() {
        let headers: [(path: String, header: Result<CaptureHeader, AnalysisError>)] = [
            ("cal-a-early", .success(Self.header(at: 0, scan: 2, calibration: true))),
            ("cal-a-late", .success(Self.header(at: 100, scan: 4, calibration: true))),
            ("cal-b", .success(Self.header(serial: "DX1-000999", at: 50, scan: 2, calibration: true))),
            ("scan-a-between", .success(Self.header(at: 60, scan: 3, calibration: false))),
            ("scan-a-after", .success(Self.header(at: 200, scan: 6, calibration: false))),
            // Made in the same second as the late calibration, before it: the scan ids tell.
            ("scan-a-same-second", .success(Self.header(at: 100, scan: 3, calibration: false))),
            ("scan-b", .success(Self.header(serial: "DX1-000999", at: 10, scan: 4, calibration: false))),
            ("garbage", .failure(.unreadable("garbage", "not a DX-1 capture (bad magic)"))),
        ]
        let plan = Reanalysis.plan(headers, calibration: nil)
        #expect(plan.calibrations == ["cal-a-early", "cal-a-late", "cal-b"])
        let jobs = Dictionary(uniqueKeysWithValues: plan.jobs.map { ($0.capture, $0.calibrations) })
        #expect(jobs.count == 4, "calibration captures are references, not jobs")
        #expect(jobs["scan-a-between"] == ["cal-a-early"])
        #expect(jobs["scan-a-after"] == ["cal-a-late", "cal-a-early"])
        #expect(jobs["scan-a-same-second"] == ["cal-a-early"])
        // Its unit's only calibration was made after it: none.
        #expect(jobs["scan-b"] == [])
        #expect(plan.unreadable.map(\.capture) == ["garbage"] && plan.unreadable.first?.error?.contains("bad magic") == true)
        // A scout (a dark scan and its lines, no air scan) has nothing to measure.
        var scout = Self.header(at: 300, scan: 9, calibration: false)
        scout.scans = [CaptureScan(scanID: 8, role: .dark), CaptureScan(scanID: 9, role: .patient, region: .apSpine)]
        let withScout = Reanalysis.plan(headers + [("scout", .success(scout))], calibration: nil)
        #expect(withScout.scouts == ["scout"] && withScout.jobs.count == 4)
        // One calibration named: every capture against it, whatever its unit or time.
        let named = Reanalysis.plan(headers, calibration: "/x/cal.dxcap")
        #expect(named.jobs.count == 4 && named.jobs.allSatisfy { $0.calibrations == ["/x/cal.dxcap"] })
    }

    /// A capture whose header has no readable time is never paired by time.
    @Test func aCaptureWithoutATimeGetsNoCalibration() {
        var undated = Self.header(at: 60, scan: 3, calibration: false)
        undated.created = "yesterday"
        let plan = Reanalysis.plan([("cal", .success(Self.header(at: 0, scan: 2, calibration: true))), ("undated", .success(undated))], calibration: nil)
        #expect(plan.jobs.first?.calibrations == [])
    }

    @Test func foldersGiveTheirCapturesInNameOrder() throws {
        let dir = TemporaryDirectory()
        for name in ["b.dxcap", "a.dxcap", "notes.txt"] { try Data().write(to: URL(fileURLWithPath: dir.file(name))) }
        try FileManager.default.createDirectory(atPath: dir.file("sub"), withIntermediateDirectories: true)
        try Data().write(to: URL(fileURLWithPath: dir.file("sub/c.dxcap")))
        let (files, missing) = Reanalysis.files([dir.path, dir.file("sub/c.dxcap"), dir.file("nowhere")])
        #expect(files == [dir.file("a.dxcap"), dir.file("b.dxcap"), dir.file("sub/c.dxcap")])
        #expect(missing.map(\.capture) == [dir.file("nowhere")] && missing.first?.ok == false)
    }

    /// The header is read without the records: a capture cut inside its records still names
    /// itself, and garbage is refused with the same words as a whole read.
    @Test func theHeaderAloneIsRead() throws {
        let dir = TemporaryDirectory()
        let h = Self.header(at: 0, scan: 2, calibration: true)
        let cut = dir.file("cut.dxcap")
        try Data(try CaptureFormat.preamble(h) + [1, 2, 3]).write(to: URL(fileURLWithPath: cut))
        #expect(try CaptureReader.header(path: cut) == h)
        for (bytes, says) in [(Array("not a capture".utf8), "bad magic"), (CaptureFormat.magic + [1, 0, 9, 0, 0, 0, 0x7B], "truncated"),
                              (CaptureFormat.magic + [1, 0, 0xFF, 0xFF, 0xFF, 0x7F], "implausible"), (CaptureFormat.magic + [2, 0], "version 2")] {
            let path = dir.file("bad.dxcap")
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            #expect(throws: AnalysisError.self) { try CaptureReader.header(path: path) }
            do { _ = try CaptureReader.header(path: path) } catch { #expect(error.description.contains(says), "\(error)") }
        }
        #expect(throws: AnalysisError.self) { try CaptureReader.header(path: dir.file("nowhere.dxcap")) }
    }
}
