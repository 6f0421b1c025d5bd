import DXProtocol
import DXSimulator
import DXTestSupport
import DXTransport
import Foundation
import Testing

/// A capture on a disk that fills: the failed write is cut back to the last whole record, the
/// writer takes nothing more and says why, and the file reads as every record before it.
/// Root only (a 1 MB tmpfs); under CI it runs and fails if it cannot.
@Suite("Capture writer on a full disk", .enabled(if: ScratchDisk.available || ProcessInfo.processInfo.environment["CI"] != nil))
struct CaptureWriterTests {
    @Test func aFullDiskEndsTheCaptureOnAWholeRecord() throws {
        let dir = TemporaryDirectory()
        let disk = try ScratchDisk(at: dir.file("disk"), megabytes: 1)
        defer { disk.unmount() }
        let header = CaptureHeader(device: SimulatorConfiguration.standardInfo, scans: [CaptureScan(scanID: 1, role: .qc)])
        let writer = try CaptureWriter(path: disk.path + "/full.dxcap", header: header, clock: ContinuousClock())
        // Records of 5,000 bytes (odd-sized against the 4 kB pages) until the disk refuses one.
        let record = [UInt8](repeating: 0x5A, count: 5_000)
        var written = 0
        var refusal: (any Error)?
        for _ in 0..<1_000 {
            do { try writer.record(.dataIn, record); written += 1 } catch { refusal = error; break }
        }
        let error = try #require(refusal, "a 1 MB disk took 5 MB")
        #expect(written > 100)
        #expect("\(error)".contains("no space left") || "\(error)".contains("No space left"), "\(error)")
        let failure = try #require(writer.failure)
        #expect(failure.contains("after \(written) records"), "\(failure)")
        // Room again, but the capture stays ended: no record lands after a gap.
        disk.release()
        #expect(throws: (any Error).self) { try writer.record(.dataIn, record) }
        writer.close()
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: disk.path + "/full.dxcap")))
        let capture = try CaptureFormat.parse(bytes)
        #expect(!capture.truncatedTail, "a partial record was left at the end")
        #expect(capture.records.count == written)
        #expect(capture.records.allSatisfy { $0.bytes == record })
    }

    @Test func aDiskWithNoRoomForThePreambleLeavesNoFile() throws {
        let dir = TemporaryDirectory()
        let disk = try ScratchDisk(at: dir.file("disk"), megabytes: 1)
        defer { disk.unmount() }
        try disk.fill()
        let path = disk.path + "/none.dxcap"
        let header = CaptureHeader(device: SimulatorConfiguration.standardInfo, scans: [CaptureScan(scanID: 1, role: .qc)])
        #expect(throws: (any Error).self) { _ = try CaptureWriter(path: path, header: header, clock: ContinuousClock()) }
        #expect(!FileManager.default.fileExists(atPath: path), "an unreadable capture was left behind")
    }
}
