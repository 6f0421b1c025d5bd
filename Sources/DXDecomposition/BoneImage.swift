import CZlib
import DXProtocol
import Foundation

/// The bone mineral image of a scan (one row per line, one column per channel) with its
/// ROIs, rendered as a PNG a person can look at: grey from 0 (black) to `fullScale` g/cm²
/// (white), flagged pixels dark red, ROI outlines yellow, pixels made square (rows or columns
/// repeated when the line step and the channel pitch differ) and small images enlarged.
public struct BoneImage: Sendable {
    public var rows: [[Double]] = []
    public var lineY: [Int32] = []
    public var lineX: [Int32] = []
    public let geometry: ScanGeometry
    public let lineStepUm: Int32
    public var fullScale = 2.0

    public init(geometry: ScanGeometry, lineStepUm: Int32) {
        self.geometry = geometry
        self.lineStepUm = lineStepUm
    }

    public mutating func add(_ line: DecomposedLine) {
        rows.append(line.bone)
        lineY.append(line.yUm)
        lineX.append(line.xUm)
    }

    /// RGB pixels, row-major, with the enlargement applied; (width, height, bytes).
    public func render(rois: [Phantom.ROI]) -> (width: Int, height: Int, rgb: [UInt8]) {
        let n = geometry.channels, m = rows.count
        guard n > 0, m > 0 else { return (0, 0, []) }
        let step = Double(max(1, abs(lineStepUm))), pitch = Double(max(1, geometry.pitchUm))
        // Square pixels, and at least about 600 pixels across.
        let ax = max(1, pitch / step), ay = max(1, step / pitch)
        let base = max(1, Int((600 / (Double(n) * ax)).rounded(.up)))
        let sx = max(1, Int((Double(base) * ax).rounded()))
        let sy = max(1, Int((Double(base) * ay).rounded()))
        let width = n * sx, height = m * sy
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        func put(_ px: Int, _ py: Int, _ c: (UInt8, UInt8, UInt8)) {
            guard px >= 0, px < width, py >= 0, py < height else { return }
            let o = (py * width + px) * 3
            rgb[o] = c.0; rgb[o + 1] = c.1; rgb[o + 2] = c.2
        }
        for (r, row) in rows.enumerated() {
            for (c, v) in row.enumerated() {
                let colour: (UInt8, UInt8, UInt8)
                if v.isFinite {
                    let g = UInt8(max(0, min(255, (v / fullScale * 255).rounded())))
                    colour = (g, g, g)
                } else {
                    colour = (110, 0, 0)
                }
                for dy in 0..<sy { for dx in 0..<sx { put(c * sx + dx, r * sy + dy, colour) } }
            }
        }
        let yellow: (UInt8, UInt8, UInt8) = (255, 210, 0)
        for roi in rois where roi.xUm.count == 2 && roi.yUm.count == 2 {
            let x0 = Double(min(roi.xUm[0], roi.xUm[1])), x1 = Double(max(roi.xUm[0], roi.xUm[1]))
            let y0 = min(roi.yUm[0], roi.yUm[1]), y1 = max(roi.yUm[0], roi.yUm[1])
            let inside = lineY.indices.filter { lineY[$0] >= y0 && lineY[$0] < y1 }
            guard let top = inside.first, let bottom = inside.last else { continue }
            let carriage = lineX[top]
            func column(_ x: Double) -> Int {
                Int(((x - Double(carriage)) / pitch + Double(n - 1) / 2).rounded())
            }
            let left = max(0, column(x0)) * sx, right = min(n, column(x1)) * sx - 1
            let upper = top * sy, lower = (bottom + 1) * sy - 1
            guard right > left else { continue }
            for px in left...right { for t in 0..<2 { put(px, upper + t, yellow); put(px, lower - t, yellow) } }
            for py in upper...lower { for t in 0..<2 { put(left + t, py, yellow); put(right - t, py, yellow) } }
        }
        return (width, height, rgb)
    }

    public func png(rois: [Phantom.ROI]) throws(PNG.EncodingError) -> [UInt8] {
        let (w, h, rgb) = render(rois: rois)
        return try PNG.encode(width: w, height: h, rgb: rgb)
    }
}

/// A minimal PNG encoder: 8-bit RGB, no interlace, each row filtered with "none", the data
/// compressed by zlib.
public enum PNG {
    public struct EncodingError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    public static func encode(width: Int, height: Int, rgb: [UInt8]) throws(EncodingError) -> [UInt8] {
        guard width > 0, height > 0, rgb.count == width * height * 3 else {
            throw EncodingError(description: "no image to write (\(width) × \(height) pixels)")
        }
        var raw = [UInt8]()
        raw.reserveCapacity((width * 3 + 1) * height)
        for y in 0..<height {
            raw.append(0)
            raw += rgb[(y * width * 3)..<((y + 1) * width * 3)]
        }
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var ihdr = WireWriterBE()
        ihdr.u32(UInt32(width)); ihdr.u32(UInt32(height))
        ihdr.bytes += [8, 2, 0, 0, 0]  // depth 8, colour type RGB, deflate, filter 0, no interlace
        chunk("IHDR", ihdr.bytes, into: &out)
        chunk("IDAT", try deflate(raw), into: &out)
        chunk("IEND", [], into: &out)
        return out
    }

    static func chunk(_ type: String, _ data: [UInt8], into out: inout [UInt8]) {
        var w = WireWriterBE()
        w.u32(UInt32(data.count))
        let body = Array(type.utf8) + data
        w.bytes += body
        w.u32(CRC32.checksum(body))
        out += w.bytes
    }

    static func deflate(_ data: [UInt8]) throws(EncodingError) -> [UInt8] {
        var size = compressBound(uLong(data.count))
        var out = [UInt8](repeating: 0, count: Int(size))
        let status = out.withUnsafeMutableBufferPointer { o in
            data.withUnsafeBufferPointer { i in compress2(o.baseAddress, &size, i.baseAddress, uLong(data.count), 6) }
        }
        guard status == Z_OK else { throw EncodingError(description: "zlib compress2 failed (\(status))") }
        return Array(out.prefix(Int(size)))
    }

    /// PNG's integers are big-endian (the ICD's are little-endian).
    struct WireWriterBE {
        var bytes: [UInt8] = []
        mutating func u32(_ v: UInt32) { bytes += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
    }
}
