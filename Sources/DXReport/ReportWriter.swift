import CCairo
import DXAcquisition
import DXDecomposition
import Foundation

/// Writes the exam's report as PDF (A4 pages, vector) or PNG (each page at 150 dpi, a file a page).
public enum ReportWriter {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// The sites' decomposed scans, read from the paths the results carry (`capture` →
    /// `.dxdec` beside it); a site whose scan cannot be read is drawn without its image.
    public static func scans(for r: ExamResults) -> [String: DecomposedScan] {
        var out: [String: DecomposedScan] = [:]
        for s in r.sites where s.result != nil {
            guard let capture = s.capture, let scan = try? DecomposedScan.read(path: DecomposedScan.path(forCapture: capture)) else { continue }
            out[s.site] = scan
        }
        return out
    }

    /// The report as one PDF (A4, vector), every page in it.
    public static func pdf(_ r: ExamResults, scans: [String: DecomposedScan], to path: String, generated: Date = Date()) throws(Failure) {
        guard let surface = cairo_pdf_surface_create(path, ReportPage.width, ReportPage.height) else { throw Failure(description: "cannot create \(path)") }
        defer { cairo_surface_destroy(surface) }
        let pages = ReportPage.pages(r, scans: scans)
        for (k, page) in pages.enumerated() {
            try draw(r, page: page, index: k, count: pages.count, surface: surface, scale: 1, generated: generated)
        }
        cairo_surface_finish(surface)
        let status = cairo_surface_status(surface)
        guard status == CAIRO_STATUS_SUCCESS else { throw Failure(description: "cannot write \(path): \(String(cString: cairo_status_to_string(status)))") }
    }

    /// The report as PNG at `dpi`, one file a page: the first at `path`, the next beside it
    /// with the page's number (`report.png`, `report-2.png`, ...); page files beyond the last
    /// (an earlier, longer report's) are removed. Returns the files written.
    @discardableResult
    public static func png(_ r: ExamResults, scans: [String: DecomposedScan], to path: String, dpi: Double = 150, generated: Date = Date()) throws(Failure) -> [String] {
        let scale = dpi / 72
        let pages = ReportPage.pages(r, scans: scans)
        var written: [String] = []
        for (k, page) in pages.enumerated() {
            let file = k == 0 ? path : pagePath(path, page: k + 1)
            guard let surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, Int32((ReportPage.width * scale).rounded()), Int32((ReportPage.height * scale).rounded())) else {
                throw Failure(description: "cannot create an image surface")
            }
            defer { cairo_surface_destroy(surface) }
            try draw(r, page: page, index: k, count: pages.count, surface: surface, scale: scale, generated: generated)
            let status = cairo_surface_write_to_png(surface, file)
            guard status == CAIRO_STATUS_SUCCESS else { throw Failure(description: "cannot write \(file): \(String(cString: cairo_status_to_string(status)))") }
            written.append(file)
        }
        // Pages of an earlier, longer report beside it are not this report's: removed.
        var k = pages.count + 1
        while FileManager.default.fileExists(atPath: pagePath(path, page: k)) {
            try? FileManager.default.removeItem(atPath: pagePath(path, page: k))
            k += 1
        }
        return written
    }

    /// Page n's file beside page 1's: the number before the extension.
    static func pagePath(_ path: String, page: Int) -> String {
        let url = URL(fileURLWithPath: path)
        let ext = url.pathExtension
        let base = ext.isEmpty ? path : String(path.dropLast(ext.count + 1))
        return ext.isEmpty ? "\(base)-\(page)" : "\(base)-\(page).\(ext)"
    }

    static func draw(_ r: ExamResults, page: [ReportPage.Block], index: Int, count: Int, surface: OpaquePointer, scale: Double, generated: Date) throws(Failure) {
        guard let cr = cairo_create(surface) else { throw Failure(description: "cannot draw") }
        defer { cairo_destroy(cr) }
        cairo_scale(cr, scale, scale)
        ReportPage.draw(r, page: page, index: index, count: count, generated: generated, on: Canvas(cr: cr))
        cairo_show_page(cr)
        let status = cairo_status(cr)
        guard status == CAIRO_STATUS_SUCCESS else { throw Failure(description: "drawing failed: \(String(cString: cairo_status_to_string(status)))") }
    }
}
