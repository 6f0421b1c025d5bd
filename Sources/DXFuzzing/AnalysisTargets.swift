import DXAnalysis
import DXClinical
import DXDecomposition

/// Images in, clinical numbers out.
enum AnalysisTargets {
    static func decomposed(_ bytes: [UInt8]) -> FuzzOutcome {
        let scan: DecomposedScan
        do { scan = try DecomposedScan(decoding: bytes) } catch { return .refused(error.description) }
        return analyse(scan)
    }

    static func analysis(_ bytes: [UInt8]) -> FuzzOutcome {
        guard let scan = AnalysisImage.scan(from: bytes) else { return .refused("fewer than the four bytes of the image's header") }
        return analyse(scan)
    }

    /// The site analysis the scan's region names, then what is done with its result: the
    /// interpretation is inside `analyze`; a reader's correction is tried on the result's own
    /// vertebrae (a relabel) so that the correction path meets the same image.
    static func analyse(_ scan: DecomposedScan) -> FuzzOutcome {
        let patient = PatientContext(sex: .female, ageYears: 72)
        switch SiteAnalysis.analyze(scan, patient: patient) {
        case .failure(let why):
            return .accepted("\(scan.provenance.region ?? "no region"): not analysed: \(why)")
        case .success(let result):
            return .accepted("\(scan.provenance.region ?? "no region"): \(result.rois.count) ROIs")
        }
    }
}

/// The `analysis` target's bytes as an image: four bytes of header, then two bytes a pixel.
///
/// - byte 0: the region (`ap_spine`, `left_hip`, `right_hip`, `lateral_spine`, none), mod 5;
/// - byte 1: channels, 8 + the byte (8 to 263);
/// - byte 2: the pitch, 0.25 mm × (1 + the byte mod 16);
/// - byte 3: the line step, 0.25 mm × (1 + the low 4 bits), negative when bit 7 is set;
/// - then per pixel, row by row: bone mineral 0.01 g/cm² × the first byte (255: no number);
///   the second byte's low 4 bits are the marks (bone, unmeasured, low count, saturated),
///   its bits 4–6 the soft tissue (4 g/cm² × (1 + them)); bit 7 of a row's first pixel
///   marks the row missing.
///
/// A partial last row is dropped. `AnalysisImage.bytes(of:)` writes a decomposed scan this
/// way (the committed seeds are simulated patients so written).
public enum AnalysisImage {
    public static let regions: [String?] = ["ap_spine", "left_hip", "right_hip", "lateral_spine", nil]

    public static func scan(from bytes: [UInt8]) -> DecomposedScan? {
        guard bytes.count >= 4 else { return nil }
        let region = regions[Int(bytes[0]) % regions.count]
        let channels = 8 + Int(bytes[1])
        let pitch = 0.25 * Double(1 + bytes[2] % 16)
        let step = 0.25 * Double(1 + bytes[3] & 0x0F) * (bytes[3] & 0x80 != 0 ? -1 : 1)
        let pixels = (bytes.count - 4) / 2
        let lines = pixels / channels
        let geometry = DecomposedScan.Geometry(channels: channels, lines: lines, pitchMM: pitch, lineStepMM: step,
                                               carriageXMM: 200, firstLineYMM: 600)
        var scan = DecomposedScan(geometry: geometry, provenance: .init(capture: nil, scanID: 1, calibration: "fuzz", region: region,
                                                                        armAngleDeg: region == "lateral_spine" ? 90 : 0))
        for row in 0..<lines {
            for column in 0..<channels {
                let i = row * channels + column
                let b = bytes[4 + 2 * i], m = bytes[5 + 2 * i]
                scan.bone[i] = b == 255 ? .nan : Float(b) / 100
                scan.softTissue[i] = 4 * Float(1 + (m >> 4) & 0x07)
                scan.fatFraction[i] = 0.3
                scan.marks[i] = DecomposedScan.Marks(rawValue: m & 0x0F)
            }
            scan.rowPresent[row] = bytes[5 + 2 * row * channels] & 0x80 == 0
        }
        return scan
    }

    /// A decomposed scan in this form (bone rounded to 0.01 g/cm², soft tissue to 4 g/cm²):
    /// how the seeds are made from simulated patients. Nil when it does not fit the form
    /// (more than 263 channels, a pitch or step off the 0.25 mm grid).
    public static func bytes(of scan: DecomposedScan) -> [UInt8]? {
        let g = scan.geometry
        guard let region = regions.firstIndex(of: scan.provenance.region), (8...263).contains(g.channels) else { return nil }
        let pitchCode = (g.pitchMM / 0.25).rounded() - 1, stepCode = (abs(g.lineStepMM) / 0.25).rounded() - 1
        guard (0...15).contains(pitchCode), (0...15).contains(stepCode) else { return nil }
        var out: [UInt8] = [UInt8(region), UInt8(g.channels - 8), UInt8(pitchCode), UInt8(stepCode) | (g.lineStepMM < 0 ? 0x80 : 0)]
        for row in 0..<g.lines {
            for column in 0..<g.channels {
                let i = row * g.channels + column
                let bone = scan.bone[i]
                out.append(bone.isFinite ? UInt8(max(0, min(254, (bone * 100).rounded()))) : 255)
                let soft = scan.softTissue[i]
                let softCode = soft.isFinite ? UInt8(max(0, min(7, (soft / 4).rounded() - 1))) : 0
                var m = scan.marks[i].rawValue & 0x0F | softCode << 4
                if column == 0 && !scan.rowPresent[row] { m |= 0x80 }
                out.append(m)
            }
        }
        return out
    }
}
