import DXProtocol
import Foundation

/// One line decomposed: bone mineral and soft-tissue mass per pixel (g/cm²), fat fraction
/// where it can be measured (bone-free tissue), and which pixels are bone. Flagged pixels
/// carry NaN.
public struct DecomposedLine: Sendable {
    public var index: UInt32
    public var yUm: Int32
    public var xUm: Int32
    public var bone: [Double]
    public var soft: [Double]
    public var fatFraction: [Double]
    public var isBone: [Bool]
    public var flags: [PixelFlags]
}

/// The decomposition of a line: classify bone against the soft tissue beside it, carry that
/// tissue's ratio under the bone, apply the calibration. A pure function of the line, the
/// calibration and the geometry, so a line is decomposed the moment it arrives.
public struct Decomposer: Sendable {
    public let calibration: Calibration
    /// High-window attenuation below which a pixel is air.
    public var airThreshold = 0.05
    /// How far above the surrounding soft tissue's ratio a pixel's L_low/L_high must be to
    /// count as bone.
    public var boneMargin = 0.04
    /// Soft-tissue pixels taken on each side of a run of bone.
    public var neighbours = 8

    private let fast: Calibration.FastBoneModel

    public init(calibration: Calibration) {
        self.calibration = calibration
        fast = calibration.fastBoneModel
    }

    public func decompose(_ a: AttenuationLine) -> DecomposedLine {
        let n = a.channels
        var ratio = [Double](repeating: .nan, count: n)
        var tissue = [Bool](repeating: false, count: n)
        for c in 0..<n where a.flags[c].isEmpty && a.high[c] > airThreshold {
            tissue[c] = true
            ratio[c] = a.low[c] / a.high[c]
        }
        let tissueRatios = (0..<n).filter { tissue[$0] }.map { ratio[$0] }.sorted()
        var isBone = [Bool](repeating: false, count: n)
        if tissueRatios.count >= 3 {
            // The median is soft tissue wherever bone covers less than half the tissue. The
            // ratio is smoothed over 5 pixels before the threshold, then gaps of up to 3
            // pixels inside bone are closed and specks shorter than 4 pixels dropped.
            let baseline = tissueRatios[tissueRatios.count / 2]
            let margin = boneMargin
            // Running sums over the 5-pixel window (tissue pixels only).
            var sum = 0.0, count = 0
            for k in 0..<min(n, 3) where tissue[k] { sum += ratio[k]; count += 1 }
            for c in 0..<n {
                if tissue[c], count > 0, sum / Double(count) > baseline + margin { isBone[c] = true }
                let leaving = c - 2, entering = c + 3
                if leaving >= 0, tissue[leaving] { sum -= ratio[leaving]; count -= 1 }
                if entering < n, tissue[entering] { sum += ratio[entering]; count += 1 }
            }
            Self.close(&isBone, gap: 3)
            Self.dropShortRuns(&isBone, shorterThan: 4)
        }
        // The soft tissue under bone: interpolate the ratio across each run of bone from the
        // tissue pixels on either side.
        var softRatio = ratio
        var c = 0
        while c < n {
            guard isBone[c] else { c += 1; continue }
            var end = c
            while end + 1 < n && isBone[end + 1] { end += 1 }
            // Skip two pixels next to the edge, which may hold a little bone.
            let left = Self.mean((max(0, c - 2 - neighbours)..<max(0, c - 2)).filter { tissue[$0] && !isBone[$0] }.map { ratio[$0] })
            let right = Self.mean(((end + 3)..<min(n, end + 3 + neighbours)).filter { tissue[$0] && !isBone[$0] }.map { ratio[$0] })
            for k in c...end {
                switch (left, right) {
                case let (l?, r?):
                    let t = Double(k - c + 1) / Double(end - c + 2)
                    softRatio[k] = l + (r - l) * t
                case let (l?, nil): softRatio[k] = l
                case let (nil, r?): softRatio[k] = r
                default: softRatio[k] = tissueRatios.isEmpty ? .nan : tissueRatios[tissueRatios.count / 2]
                }
            }
            c = end + 1
        }
        var bone = [Double](repeating: .nan, count: n), soft = bone, fat = bone
        for c in 0..<n where a.flags[c].isEmpty {
            if !tissue[c] {
                bone[c] = 0; soft[c] = 0
                continue
            }
            let r = isBone[c] ? softRatio[c] : ratio[c]
            (bone[c], soft[c]) = fast.evaluate(a.low[c], a.high[c], r)
            if !isBone[c] { fat[c] = min(1, max(0, calibration.fatFraction(lLow: a.low[c], lHigh: a.high[c]))) }
        }
        return DecomposedLine(index: a.index, yUm: a.yUm, xUm: a.xUm, bone: bone, soft: soft, fatFraction: fat, isBone: isBone, flags: a.flags)
    }

    static func mean(_ v: [Double]) -> Double? { v.isEmpty ? nil : v.reduce(0, +) / Double(v.count) }

    /// Fills runs of false no longer than `gap` that lie between trues.
    static func close(_ mask: inout [Bool], gap: Int) {
        var i = 0
        while i < mask.count {
            if !mask[i], i > 0, mask[i - 1] {
                var j = i
                while j < mask.count && !mask[j] { j += 1 }
                if j < mask.count && j - i <= gap { for k in i..<j { mask[k] = true } }
                i = j
            } else { i += 1 }
        }
    }

    static func dropShortRuns(_ mask: inout [Bool], shorterThan length: Int) {
        var i = 0
        while i < mask.count {
            guard mask[i] else { i += 1; continue }
            var j = i
            while j < mask.count && mask[j] { j += 1 }
            if j - i < length { for k in i..<j { mask[k] = false } }
            i = j
        }
    }
}

/// BMD over a region (ICD §8: the mean hydroxyapatite areal density over the ROI).
public struct ROIResult: Sendable, Equatable, Codable {
    public var name: String
    public var bmdGcm2: Double
    public var areaCm2: Double
    public var bmcG: Double
    public var pixels: Int

    public enum CodingKeys: String, CodingKey {
        case name, pixels
        case bmdGcm2 = "bmd_g_cm2", areaCm2 = "area_cm2", bmcG = "bmc_g"
    }
}

/// Accumulates decomposed lines into ROI means as they arrive.
public struct ROIAccumulator: Sendable {
    public let roi: Phantom.ROI
    public let geometry: ScanGeometry
    private var sum = 0.0
    private var count = 0

    public init(roi: Phantom.ROI, geometry: ScanGeometry) { self.roi = roi; self.geometry = geometry }

    public mutating func add(_ line: DecomposedLine) {
        guard roi.xUm.count == 2, roi.yUm.count == 2 else { return }
        let y = line.yUm
        guard y >= min(roi.yUm[0], roi.yUm[1]) && y < max(roi.yUm[0], roi.yUm[1]) else { return }
        let x0 = Double(min(roi.xUm[0], roi.xUm[1])), x1 = Double(max(roi.xUm[0], roi.xUm[1]))
        for c in 0..<line.bone.count where line.bone[c].isFinite {
            let x = geometry.x(ofChannel: c, carriageX: line.xUm)
            if x >= x0 && x < x1 { sum += line.bone[c]; count += 1 }
        }
    }

    public var result: ROIResult {
        let bmd = count > 0 ? sum / Double(count) : .nan
        let area = roi.xUm.count == 2 && roi.yUm.count == 2
            ? Double(abs(roi.xUm[1] - roi.xUm[0])) * Double(abs(roi.yUm[1] - roi.yUm[0])) / 1e8 : 0
        return ROIResult(name: roi.name, bmdGcm2: bmd, areaCm2: area, bmcG: bmd * area, pixels: count)
    }
}
