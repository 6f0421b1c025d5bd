import CCairo
import DXAcquisition
import DXAnalysis
import DXDecomposition
import Foundation

/// A picture as pixels: 8-bit RGB, row by row from the top left, no padding. What DICOM
/// Secondary Capture carries (DXDicom) and what a test looks at.
public struct RGBImage: Sendable, Equatable {
    public var columns: Int
    public var rows: Int
    public var pixels: [UInt8]
    /// Millimetres on the table per pixel (row spacing, column spacing) for a site's image;
    /// nil for a report page.
    public var pixelSpacingMM: (row: Double, column: Double)?

    public static func == (a: RGBImage, b: RGBImage) -> Bool {
        a.columns == b.columns && a.rows == b.rows && a.pixels == b.pixels
            && a.pixelSpacingMM?.row == b.pixelSpacingMM?.row && a.pixelSpacingMM?.column == b.pixelSpacingMM?.column
    }
}

/// The report's pictures as pixels, drawn by the same code as the PDF: each site's image with
/// its ROIs and labels, and the report's pages.
public enum ReportRaster {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// A site's bone image with the analysis drawn over it, as the report shows it, `scale`
    /// pixels per report point (the report draws a spine 190 pt wide; scale 4 gives 760
    /// pixels). Nil when the site has no result or its scan has no lines.
    public static func site(_ site: ExamResults.Site, scan: DecomposedScan, scale: Double = 4) throws(Failure) -> RGBImage? {
        guard let result = site.result, scan.geometry.channels > 0, scan.geometry.lines > 0 else { return nil }
        let map = BoneMap(scan)
        let (w, h) = SiteFigure.size(map, result: result)
        let columns = max(1, Int((w * scale).rounded())), rows = max(1, Int((h * scale).rounded()))
        let image = try draw(columns: columns, rows: rows, scale: scale) { c in SiteFigure.draw(result, map: map, w: w, h: h, on: c) }
        let mmWide = Double(map.columns) * map.dx, mmHigh = Double(map.rows) * map.dy
        return RGBImage(columns: columns, rows: rows, pixels: image, pixelSpacingMM: (mmHigh / Double(rows), mmWide / Double(columns)))
    }

    /// A site's image with its analysis drawn over it, as `site` draws it, written as a PNG
    /// (`dexa analyze --image` on a patient scan).
    public static func sitePNG(_ result: SiteResult, scan: DecomposedScan, to path: String, scale: Double = 4) throws(Failure) {
        guard scan.geometry.channels > 0, scan.geometry.lines > 0 else { throw Failure(description: "the scan has no lines to draw") }
        let map = BoneMap(scan)
        let (w, h) = SiteFigure.size(map, result: result)
        try render(columns: max(1, Int((w * scale).rounded())), rows: max(1, Int((h * scale).rounded())), scale: scale,
                   { c in SiteFigure.draw(result, map: map, w: w, h: h, on: c) }) { surface throws(Failure) in
            let status = cairo_surface_write_to_png(surface, path)
            guard status == CAIRO_STATUS_SUCCESS else { throw Failure(description: "cannot write \(path): \(String(cString: cairo_status_to_string(status)))") }
        }
    }

    /// The report's pages at `dpi`, as the PNG pages are drawn.
    public static func pages(_ r: ExamResults, scans: [String: DecomposedScan], dpi: Double = 150, generated: Date = Date()) throws(Failure) -> [RGBImage] {
        let scale = dpi / 72
        let pages = ReportPage.pages(r, scans: scans)
        let columns = Int((ReportPage.width * scale).rounded()), rows = Int((ReportPage.height * scale).rounded())
        var out: [RGBImage] = []
        for (k, page) in pages.enumerated() {
            let pixels = try draw(columns: columns, rows: rows, scale: scale) { c in
                ReportPage.draw(r, page: page, index: k, count: pages.count, generated: generated, on: c)
            }
            out.append(RGBImage(columns: columns, rows: rows, pixels: pixels, pixelSpacingMM: nil))
        }
        return out
    }

    /// Draws on a white image of `columns` x `rows` pixels, `scale` pixels a unit; its pixels.
    static func draw(columns: Int, rows: Int, scale: Double, _ body: (Canvas) -> Void) throws(Failure) -> [UInt8] {
        try render(columns: columns, rows: rows, scale: scale, body) { surface throws(Failure) in
            guard let data = cairo_image_surface_get_data(surface) else { throw Failure(description: "no pixels") }
            let stride = Int(cairo_image_surface_get_stride(surface))
            var rgb = [UInt8](repeating: 0, count: columns * rows * 3)
            for r in 0..<rows {
                for c in 0..<columns {
                    // RGB24: a native-endian 32-bit word 0x00RRGGBB.
                    let word = UnsafeRawPointer(data + r * stride + c * 4).loadUnaligned(as: UInt32.self)
                    let i = (r * columns + c) * 3
                    rgb[i] = UInt8(truncatingIfNeeded: word >> 16)
                    rgb[i + 1] = UInt8(truncatingIfNeeded: word >> 8)
                    rgb[i + 2] = UInt8(truncatingIfNeeded: word)
                }
            }
            return rgb
        }
    }

    /// Draws `body` on a white RGB image surface of `columns` x `rows` pixels, `scale` pixels a
    /// unit, and hands the finished surface to `use`.
    static func render<T>(columns: Int, rows: Int, scale: Double, _ body: (Canvas) -> Void,
                          then use: (OpaquePointer) throws(Failure) -> T) throws(Failure) -> T {
        guard let surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, Int32(columns), Int32(rows)) else {
            throw Failure(description: "cannot create an image surface")
        }
        defer { cairo_surface_destroy(surface) }
        guard let cr = cairo_create(surface) else { throw Failure(description: "cannot draw") }
        cairo_set_source_rgb(cr, 1, 1, 1)
        cairo_paint(cr)
        cairo_scale(cr, scale, scale)
        body(Canvas(cr: cr))
        let status = cairo_status(cr)
        cairo_destroy(cr)
        guard status == CAIRO_STATUS_SUCCESS else { throw Failure(description: "drawing failed: \(String(cString: cairo_status_to_string(status)))") }
        cairo_surface_flush(surface)
        return try use(surface)
    }
}

/// A site's image and its analysis as the report draws them (the report's sizes, in points).
enum SiteFigure {
    /// The report's own size for the site (ReportPage.drawSite): its width, at true aspect,
    /// within 250 pt high (a hip 130 wide, 140 high).
    static func size(_ map: BoneMap, result: SiteResult) -> (w: Double, h: Double) {
        let isHip = result.hip != nil
        var w = isHip ? 130.0 : 190.0
        let aspect = (Double(map.rows) * map.dy) / (Double(map.columns) * map.dx)
        var h = w * aspect
        let tallest = isHip ? 140.0 : 250.0
        if h > tallest { h = tallest; w = h / aspect }
        return (w, h)
    }

    static func draw(_ result: SiteResult, map: BoneMap, w: Double, h: Double, on c: Canvas) {
        c.image(rgb: result.vfa != nil ? ReadingImage.raster(map) : SpineFigure.raster(map), columns: map.columns, rows: map.rows, x: 0, y: 0, w: w, h: h)
        let box = (x: 0.0, y: 0.0, w: w, h: h)
        if let spine = result.spine { SpineFigure.overlay(spine, result: result, map: map, box: box, on: c) }
        if let hip = result.hip { HipFigure.overlay(hip, result: result, map: map, box: box, on: c) }
        if let vfa = result.vfa { VFAFigure.overlay(vfa, map: map, box: box, on: c) }
    }
}
