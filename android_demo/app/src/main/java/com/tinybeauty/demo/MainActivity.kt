package com.tinybeauty.demo

import android.Manifest
import android.content.Context
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.Matrix
import android.os.Bundle
import android.os.SystemClock
import android.util.Log
import android.util.Size
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.appcompat.widget.SwitchCompat
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.core.resolutionselector.AspectRatioStrategy
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.camera.core.resolutionselector.ResolutionStrategy
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import java.nio.ByteBuffer
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Front camera -> upright frame -> [FaceAligner] (landmarks, similarity transform, crop) -> [RegionMasks] (the
 * crop's soft region masks, once per frame) -> [MakeupModel] (tinybeauty.tflite; a region-input model reads the
 * masks) -> [LookGate] (the same masks) -> residual paste-back -> [FrameView], with per-frame model latency and
 * fps on screen, a GPU-delegate toggle and a before/after split toggle.
 *
 * The raw CameraX preview sits underneath and shows until the first processed frame (and stays, with a
 * note, when the model is missing from assets).
 */
class MainActivity : AppCompatActivity() {

    private lateinit var previewView: PreviewView
    private lateinit var frameView: FrameView
    private lateinit var statsText: TextView
    private lateinit var noteText: TextView
    private lateinit var analysisExecutor: ExecutorService
    private lateinit var pipeline: MakeupPipeline
    private var analysis: ImageAnalysis? = null

    private val permissionRequest =
        registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
            if (granted) startCamera() else noteText.setText(R.string.no_camera_permission)
        }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        previewView = findViewById(R.id.preview)
        frameView = findViewById(R.id.frame)
        statsText = findViewById(R.id.stats)
        noteText = findViewById(R.id.note)

        analysisExecutor = Executors.newSingleThreadExecutor()
        pipeline = MakeupPipeline(applicationContext, frameView) { stats, note ->
            runOnUiThread {
                statsText.text = stats
                noteText.text = note
            }
        }
        findViewById<SwitchCompat>(R.id.gpu_switch).setOnCheckedChangeListener { _, on -> pipeline.wantGpu = on }
        findViewById<SwitchCompat>(R.id.split_switch).setOnCheckedChangeListener { _, on -> frameView.split = on }
        findViewById<SwitchCompat>(R.id.gate_switch).setOnCheckedChangeListener { _, on -> pipeline.gateOn = on }

        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            permissionRequest.launch(Manifest.permission.CAMERA)
        }
    }

    private fun startCamera() {
        val providerFuture = ProcessCameraProvider.getInstance(this)
        providerFuture.addListener({
            val provider = providerFuture.get()
            val front = try {
                provider.hasCamera(CameraSelector.DEFAULT_FRONT_CAMERA)
            } catch (e: Exception) {
                false
            }
            val selector = if (front) CameraSelector.DEFAULT_FRONT_CAMERA else CameraSelector.DEFAULT_BACK_CAMERA
            // The analysis frames are the sensor's (not mirrored); the model sees them so, like a photo,
            // and only the display is mirrored for the front camera. PreviewView mirrors on its own.
            frameView.mirror = front

            val preview = Preview.Builder().build().also { it.setSurfaceProvider(previewView.surfaceProvider) }
            // VGA is plenty: the model sees a 256x256 crop, and paste-back cost grows with the frame.
            val resolution = ResolutionSelector.Builder()
                .setAspectRatioStrategy(AspectRatioStrategy.RATIO_4_3_FALLBACK_AUTO_STRATEGY)
                .setResolutionStrategy(
                    ResolutionStrategy(ANALYSIS_SIZE, ResolutionStrategy.FALLBACK_RULE_CLOSEST_HIGHER_THEN_LOWER)
                )
                .build()
            val imageAnalysis = ImageAnalysis.Builder()
                .setResolutionSelector(resolution)
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            imageAnalysis.setAnalyzer(analysisExecutor, pipeline)
            analysis = imageAnalysis

            try {
                provider.unbindAll()
                provider.bindToLifecycle(this, selector, preview, imageAnalysis)
            } catch (e: Exception) {
                Log.e(TAG, "camera binding failed", e)
                noteText.text = getString(R.string.camera_failed, e.message ?: e.javaClass.simpleName)
            }
        }, ContextCompat.getMainExecutor(this))
    }

    override fun onDestroy() {
        super.onDestroy()
        analysis?.clearAnalyzer()
        // The interpreter (and a GPU delegate) must be closed on the thread that used them.
        analysisExecutor.execute { pipeline.close() }
        analysisExecutor.shutdown()
    }

    private companion object {
        const val TAG = "TinyBeauty"
        val ANALYSIS_SIZE = Size(640, 480)
    }
}

/**
 * The per-frame work, on the camera analysis thread. The model, the aligner and every frame buffer are
 * created here lazily and reused; the GPU toggle rebuilds the interpreter on this thread.
 */
private class MakeupPipeline(
    private val context: Context,
    private val view: FrameView,
    private val onStatus: (stats: String, note: String) -> Unit,
) : ImageAnalysis.Analyzer {

    @Volatile var wantGpu = false
    @Volatile var gateOn = true                  // the look gate switch (on by default, as `tinybeauty apply`)
    @Volatile private var closed = false

    private var modelBuffer: ByteBuffer? = null
    private var model: MakeupModel? = null
    private var aligner: FaceAligner? = null
    private var gate = LookGate.Loaded(null, null)  // the card's look gate for the aligner's crop size
    private var regions: RegionMasks? = null     // the crop's soft region masks (model input and gate), per frame
    private var gateRegions: RegionMasks? = null // the gate's: [regions] itself unless the gate's feather differs
    private var modelMasks: Array<FloatArray>? = null  // [regions]' masks in the model's channel order
    private var modelSkipped = false             // a region-input model had no face to read on the last frame
    private var setupProblem: String? = null

    private var raw: Bitmap? = null              // the analysis frame as delivered (sensor orientation)
    private var packed: ByteBuffer? = null       // row-padding-free copy when the plane has a row stride
    private val rotation = Matrix()
    private var framePixels = IntArray(0)        // upright frame, ARGB
    private var outPixels = IntArray(0)          // upright frame with the look pasted back
    private var processed = IntArray(0)          // model output crop
    private var gated = IntArray(0)              // model output crop, its change clipped by the look gate
    private val cropLandmarks = DoubleArray(2 * FaceAligner.MESH_POINTS)

    private var inferenceMs = 0f                 // exponential moving averages
    private var regionsMs = 0f
    private var frameMs = 0f
    private var fps = 0f
    private var lastFrameNs = 0L
    private var lastStatusNs = 0L

    override fun analyze(image: ImageProxy) {
        image.use {
            if (closed) return
            try {
                process(it)
            } catch (e: Exception) {
                Log.e(TAG, "frame failed", e)
                onStatus("", "frame failed: ${e.javaClass.simpleName}: ${e.message}")
            }
        }
    }

    fun close() {
        closed = true
        model?.close()
        aligner?.close()
        model = null
        aligner = null
    }

    private fun process(image: ImageProxy) {
        val start = SystemClock.elapsedRealtimeNanos()
        if (!ensureModel()) return
        val model = model ?: return
        val aligner = aligner ?: return

        // Upright (not mirrored) frame: rotate the sensor image by rotationDegrees.
        val src = copyToBitmap(image)
        val degrees = image.imageInfo.rotationDegrees
        val w = if (degrees % 180 == 0) src.width else src.height
        val h = if (degrees % 180 == 0) src.height else src.width
        val frame = view.obtain(w, h)
        rotation.reset()
        rotation.postTranslate(-src.width / 2f, -src.height / 2f)
        rotation.postRotate(degrees.toFloat())
        rotation.postTranslate(w / 2f, h / 2f)
        frame.beforeCanvas.drawBitmap(src, rotation, null)  // multiples of 90 degrees: exact, no filtering

        if (framePixels.size != w * h) {
            framePixels = IntArray(w * h)
            outPixels = IntArray(w * h)
        }
        frame.before.getPixels(framePixels, 0, w, 0, 0, w, h)
        val framing = aligner.align(frame.before, framePixels, image.imageInfo.timestamp / 1_000_000L)
        // student/apply.py gated_crop: one label map of the crop's face-mesh regions and its soft masks, computed
        // once, read by a region-input model and faded into the look gate's limits.
        val lookGate = if (gateOn) gate.gate else null
        val face = aligner.cropLandmarks(cropLandmarks)
        val masks = regions
        val forGate = if (lookGate != null) gateRegions else null
        val t0 = SystemClock.elapsedRealtimeNanos()
        if (face && masks != null && (model.regionInput || forGate != null)) {
            masks.compute(cropLandmarks)
            if (forGate != null && forGate !== masks) forGate.compute(cropLandmarks)
        }
        val maskMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6f
        System.arraycopy(framePixels, 0, outPixels, 0, w * h)
        // A region-input model without a face mesh has no regions to read: it does not run (as gated_crop
        // refuses it), the frame stays as it is and the note says why.
        modelSkipped = model.regionInput && !face
        if (!modelSkipped) {
            inferenceMs = smooth(inferenceMs, model.run(aligner.crop, if (model.regionInput) modelMasks else null, processed))
            val change = if (face && lookGate != null && forGate != null) {
                lookGate.apply(aligner.crop, processed, forGate, gated)
                gated
            } else processed
            aligner.pasteBack(outPixels, change)
        }
        frame.after.setPixels(outPixels, 0, w, 0, 0, w, h)
        view.publish(frame)

        val now = SystemClock.elapsedRealtimeNanos()
        if (face) regionsMs = smooth(regionsMs, maskMs)
        frameMs = smooth(frameMs, (now - start) / 1e6f)
        if (lastFrameNs != 0L) fps = smooth(fps, 1e9f / (now - lastFrameNs))
        lastFrameNs = now
        if (now - lastStatusNs > STATUS_INTERVAL_NS) {
            lastStatusNs = now
            onStatus(statsLine(model, w, h), noteLine(model, aligner, framing))
        }
    }

    /** Map the model once, (re)build the interpreter when the GPU toggle changed, size the aligner to it. */
    private fun ensureModel(): Boolean {
        if (setupProblem != null) return false
        try {
            val buffer = modelBuffer ?: run {
                if (!MakeupModel.hasAsset(context)) {
                    return fail("${MakeupModel.MODEL_ASSET} is not in assets: run `make android-assets` and reinstall")
                }
                MakeupModel.mapAsset(context).also { modelBuffer = it }
            }
            val current = model
            if (current == null || current.gpuRequested != wantGpu) {
                current?.close()
                model = null
                val fresh = MakeupModel(buffer, wantGpu)
                model = fresh
                if (aligner?.size != fresh.size) {
                    aligner?.close()
                    aligner = FaceAligner(context, fresh.size)
                    gate = LookGate.load(context, fresh.size)
                }
                setupRegions(fresh)
                if (processed.size != fresh.size * fresh.size) {
                    processed = IntArray(fresh.size * fresh.size)
                    gated = IntArray(fresh.size * fresh.size)
                }
            }
            return true
        } catch (e: Exception) {
            Log.e(TAG, "model setup failed", e)
            return fail("${MakeupModel.MODEL_ASSET} did not load: ${e.message ?: e.javaClass.simpleName}")
        }
    }

    /**
     * The crop's region masks, needed by a region-input model (at the card's `io.region_input` feather, even
     * without a look gate) and by the gate (at its own feather: the same masks when the two agree, as exports
     * write them). A region-input model whose card has no `io.region_input` cannot run: this throws.
     */
    private fun setupRegions(model: MakeupModel) {
        val input = if (model.regionInput) RegionInput.load(context) else null
        val lookGate = gate.gate
        regions = null
        gateRegions = null
        modelMasks = null
        val feather = input?.feather ?: lookGate?.feather ?: return
        val shared = RegionMasks.load(context, model.size, feather)
        regions = shared
        if (input != null) modelMasks = shared.inOrder(input.channels)
        if (lookGate != null) {
            gateRegions = if (lookGate.feather == feather) shared else RegionMasks.load(context, model.size, lookGate.feather)
        }
    }

    private fun fail(problem: String): Boolean {
        setupProblem = problem
        onStatus("", problem)
        return false
    }

    /** The RGBA_8888 plane into a reused ARGB_8888 bitmap (same byte order), dropping any row padding. */
    private fun copyToBitmap(image: ImageProxy): Bitmap {
        val w = image.width
        val h = image.height
        val bmp = raw?.takeIf { it.width == w && it.height == h }
            ?: Bitmap.createBitmap(w, h, Bitmap.Config.ARGB_8888).also { raw = it }
        val plane = image.planes[0]
        val buffer = plane.buffer
        val rowBytes = w * 4
        buffer.rewind()
        if (plane.rowStride == rowBytes) {
            bmp.copyPixelsFromBuffer(buffer)
        } else {
            val dst = packed?.takeIf { it.capacity() == rowBytes * h }
                ?: ByteBuffer.allocateDirect(rowBytes * h).also { packed = it }
            dst.clear()
            for (y in 0 until h) {
                buffer.limit(y * plane.rowStride + rowBytes)
                buffer.position(y * plane.rowStride)
                dst.put(buffer)
            }
            buffer.limit(buffer.capacity())
            dst.flip()
            bmp.copyPixelsFromBuffer(dst)
        }
        return bmp
    }

    private fun statsLine(model: MakeupModel, w: Int, h: Int): String = String.format(
        Locale.US,
        "model %.1f ms · regions %.1f ms · frame %.1f ms · %.1f fps\n%s · %s [1,%d,%d,%d] %s %s%s [%.0f,%.0f] · camera %dx%d",
        inferenceMs, regionsMs, frameMs, fps, model.backendLabel(), MakeupModel.LAYOUT, model.size, model.size,
        model.channels, MakeupModel.IO_DTYPE, MakeupModel.COLOR_ORDER, if (model.regionInput) " + region masks" else "",
        MakeupModel.VALUE_MIN, MakeupModel.VALUE_MAX, w, h,
    )

    private fun noteLine(model: MakeupModel, aligner: FaceAligner, framing: FaceAligner.Framing): String {
        val framingNote = when (framing) {
            FaceAligner.Framing.FACE -> null
            FaceAligner.Framing.NO_FACE -> "no face found: centred square crop"
            FaceAligner.Framing.NO_LANDMARKER ->
                "${aligner.landmarkerProblem ?: "no face landmarker"}: centred square crop (see README)"
        }
        val gateNote = if (gate.gate != null && !gateOn) "look gate off" else gate.note
        val skippedNote = if (modelSkipped) "the model needs the face's regions: not run on this frame" else null
        return listOfNotNull(framingNote, skippedNote, aligner.alignment.note, gateNote, model.note).joinToString("\n")
    }

    private companion object {
        const val TAG = "TinyBeauty"
        const val STATUS_INTERVAL_NS = 250_000_000L
        const val SMOOTHING = 0.1f

        fun smooth(average: Float, sample: Float): Float =
            if (average == 0f) sample else average + SMOOTHING * (sample - average)
    }
}
