import Foundation
import Testing
@testable import DXProtocol

/// A phantom from a file (ICD §8, in a capture's header or a phantom file) is two corners and
/// possible densities per cell, or it is refused with the key and why; before, a cell with one
/// corner was read and silently left out by every reader.
@Suite struct PhantomFileTests {
    func decode(_ json: String) throws -> Phantom { try JSONDecoder().decode(Phantom.self, from: Data(json.utf8)) }

    @Test func aWellFormedPhantomReads() throws {
        let p = try decode(#"{"name":"esp","cells":[{"x_um":[0,10000],"y_um":[5000,25000],"hydroxyapatite_g_cm2":1.0,"lean_g_cm2":15,"fat_g_cm2":3}],"rois":[{"name":"L2","x_um":[0,10],"y_um":[5,6]}]}"#)
        #expect(p.cells?.first?.lean == 15)
        #expect(p.rois?.first?.yUm == [5, 6])
    }

    @Test(arguments: [
        (#"{"name":"p","cells":[{"x_um":[0],"y_um":[0,1],"hydroxyapatite_g_cm2":1,"lean_g_cm2":15,"fat_g_cm2":3}]}"#, "expected two corners [from, to], got 1 values"),
        (#"{"name":"p","cells":[{"x_um":[0,1],"y_um":[0,1,2],"hydroxyapatite_g_cm2":1,"lean_g_cm2":15,"fat_g_cm2":3}]}"#, "expected two corners [from, to], got 3 values"),
        (#"{"name":"p","cells":[{"x_um":[0,1],"y_um":[0,1],"hydroxyapatite_g_cm2":-0.5,"lean_g_cm2":15,"fat_g_cm2":3}]}"#, "-0.5 g/cm² is not an areal density"),
        (#"{"name":"p","cells":[{"x_um":[0,1],"y_um":[0,1],"hydroxyapatite_g_cm2":1,"lean_g_cm2":1e9,"fat_g_cm2":3}]}"#, "1000000000.0 g/cm² is not an areal density"),
        (#"{"name":"p","rois":[{"name":"L2","x_um":[],"y_um":[5,6]}]}"#, "got 0 values"),
    ])
    func aCellOrROIThatIsNoneIsRefusedWithWhy(_ json: String, _ why: String) {
        do {
            _ = try decode(json)
            Issue.record("accepted: \(json)")
        } catch {
            #expect("\(error)".contains(why), "\(error)")
        }
    }

    /// A capture whose header holds such a phantom is refused as a whole, with the reason.
    @Test func aCaptureWithABadPhantomIsRefused() throws {
        let info = DeviceInfo(model: "DX-1", serial: "DX1-000123", fwMajor: 1, fwMinor: 4, fwPatch: 2, channels: 144, pitchUm: 1000,
                              energyLowKeV: 40, energyHighKeV: 70, maxLineRateHz: 100, travelXUm: 400_000, travelYUm: 2_000_000,
                              airZoneYUm: 1_900_000, watchdogMs: 1000)
        let header = CaptureHeader(device: info, scans: [], phantom: Phantom(name: "esp", rois: [Phantom.ROI(name: "L2", xUm: [0, 10], yUm: [5, 6])]))
        let good = try CaptureFormat.preamble(header)
        #expect(try CaptureFormat.parse(good).header == header)
        let json = String(decoding: good.dropFirst(12), as: UTF8.self).replacingOccurrences(of: "[0,10]", with: "[1]")
        let n = UInt32(json.utf8.count)
        let bad = CaptureFormat.magic + [1, 0, UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24)] + Array(json.utf8)
        do {
            _ = try CaptureFormat.parse(bad)
            Issue.record("a one-corner ROI was accepted")
        } catch {
            #expect(error.description.contains("two corners"), "\(error)")
        }
    }
}
